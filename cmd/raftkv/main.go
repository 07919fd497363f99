// Command raftkv runs raftkv: a node of a cluster, a local development
// cluster, or a command against a running cluster.
//
//	raftkv serve --id n1 --data-dir DIR --peer-addr 127.0.0.1:7001 \
//	    --redis-addr 127.0.0.1:6381 --http-addr 127.0.0.1:8081 \
//	    --cluster n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003
//	raftkv serve --id n4 --data-dir DIR --peer-addr 127.0.0.1:7004 --join http://127.0.0.1:8081
//	raftkv 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002
//	raftkv dev
//	raftkv get|put|del|status|members|transfer-leader ... [--endpoints URL,...]
//
// Founders of a new cluster wait for each other at their first start: they
// agree on a random cluster id (see node.Found), so a node left over from
// an earlier cluster is refused.
//
// The second form is the original teaching program's: the address to listen
// on, then the peers' addresses. Every flag can also be set through an
// environment variable RAFTKV_<FLAG>, with dashes as underscores
// (RAFTKV_DATA_DIR). A restarted node needs only its data directory.
//
// This package only parses command lines and wires the other packages
// together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // a node failed while running; a command failed (key not found, no node answered)
	exitStartup = 2 // bad flags, an address in use, a data dir of another node
)

const usage = `usage:
  raftkv serve --id NAME --data-dir DIR --cluster NAME=HOST:PORT,... [flags]
                                                   a founder of a new cluster
  raftkv serve --id NAME --data-dir DIR --peer-addr HOST:PORT --join URL [flags]
                                                   a new node that joins a running cluster
  raftkv serve --data-dir DIR [flags]              restart a node
  raftkv [flags] LISTEN_ADDR [PEER_ADDR...]        the original form
  raftkv dev [flags]                               a local three-node cluster
  raftkv get KEY                                   print the value of KEY
  raftkv put KEY [VALUE]                           set KEY (VALUE from stdin if omitted)
  raftkv del KEY                                   delete KEY
  raftkv status                                    every node's raft state
  raftkv members [list]                            the cluster's members
  raftkv members add NAME PEER_ADDR [--learner]    add a voter (or a learner)
  raftkv members remove NAME                       remove a member
  raftkv members promote NAME                      make a learner a voter
  raftkv transfer-leader NAME                      make member NAME the leader

get, put, del, status, members and transfer-leader talk to --endpoints
(default: the dev cluster's) and exit 0 on success, 1 on failure (a
missing key, an unknown member or a refused change included) and 2 on bad
usage. "raftkv COMMAND -h" lists a command's flags.
Every flag can also be set as RAFTKV_<FLAG> (dashes as underscores).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs raftkv with the given arguments until it is done or ctx is
// cancelled (a signal), and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	if _, ok := commands[cmd]; ok {
		return runCommand(ctx, cmd, args[1:], stdin, stdout, stderr, getenv)
	}
	switch cmd {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr, getenv)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	return runNode(ctx, args, stderr, getenv)
}

// newFlagSet returns a flag set that reports errors through its caller, in
// one line, rather than printing them itself.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args with fs, flags wherever they appear among the
// positional arguments, then fills the flags not given from the environment.
// On -h it prints the usage and fs's flags to stderr and returns
// flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, getenv func(string) string) ([]string, error) {
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		fmt.Fprintf(stderr, "\nFlags of %s:\n", fs.Name())
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w (see raftkv -h)", err)
	}
	return pos, applyEnv(fs, getenv)
}

// parseInterleaved parses flags wherever they appear among the positional
// arguments (the flag package stops at the first one), so that
// "raftkv 127.0.0.1:7000 --http-addr :8080 127.0.0.1:7001" works.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// applyEnv sets every flag not given on the command line from its
// RAFTKV_<FLAG> environment variable, if set.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q for %s: %w", v, name, serr)
			}
		}
	})
	return err
}

// envName is the environment variable of a flag.
func envName(flag string) string {
	return "RAFTKV_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// oneLine keeps an error on one line of stderr (joined errors span several).
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
