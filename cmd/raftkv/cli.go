package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// commands are the commands that talk to a cluster, with how many
// arguments each takes, at least and at most, and what they are.
var commands = map[string]struct {
	min, max int
	args     string
}{
	"get":             {1, 1, "KEY"},
	"put":             {1, 2, "KEY [VALUE]"},
	"del":             {1, 1, "KEY"},
	"status":          {0, 0, ""},
	"members":         {0, 3, "[list | add NAME PEER_ADDR [--learner] | remove NAME | promote NAME]"},
	"transfer-leader": {1, 1, "NAME"},
}

// runCommand runs one of the commands that talk to a cluster through its
// HTTP API, and returns the exit code: 1 for any failure, a missing key
// included, as etcdctl and consul do; 2 for bad usage.
func runCommand(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := newFlagSet("raftkv " + cmd)
	endpoints := fs.String("endpoints", strings.Join(devAddrs("127.0.0.1", defaultHTTPPort, defaultNodes), ","), "comma-separated HTTP addresses of the cluster's nodes")
	output := fs.String("output", "text", "output format: text or json")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long, retries included")
	var learner bool
	if cmd == "members" {
		fs.BoolVar(&learner, "learner", false, "members add: add a learner (it receives the log but does not vote) rather than a voter")
	}
	pos, err := parseFlags(fs, args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err == nil {
		err = checkCommand(cmd, pos, *output, *timeout)
	}
	if err == nil && cmd == "members" {
		err = checkMembersCommand(pos, learner)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv %s: %s\n", cmd, oneLine(err))
		return exitStartup
	}
	c, err := client.New(strings.Split(*endpoints, ","), client.WithTimeout(*timeout))
	if err != nil {
		fmt.Fprintf(stderr, "raftkv %s: --endpoints: %s\n", cmd, oneLine(err))
		return exitStartup
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	p := printer{w: stdout, json: *output == "json"}
	switch cmd {
	case "get":
		err = get(ctx, c, p, pos[0])
	case "put":
		err = put(ctx, c, p, pos, stdin)
	case "del":
		err = del(ctx, c, p, pos[0])
	case "status":
		err = status(ctx, c, p)
	case "members":
		err = membersCommand(ctx, c, p, pos, learner)
	case "transfer-leader":
		err = transferLeader(ctx, c, p, pos[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv %s: %s\n", cmd, oneLine(err))
		return exitFailed
	}
	return exitOK
}

func checkCommand(cmd string, pos []string, output string, timeout time.Duration) error {
	if c := commands[cmd]; len(pos) < c.min || len(pos) > c.max {
		return fmt.Errorf("usage: %s [flags], got %d arguments (see raftkv %s -h)", strings.TrimSpace("raftkv "+cmd+" "+c.args), len(pos), cmd)
	}
	if output != "text" && output != "json" {
		return fmt.Errorf("--output %q: want text or json", output)
	}
	if timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %v", timeout)
	}
	return nil
}

// printer writes a command's result as text for people or as JSON.
type printer struct {
	w    io.Writer
	json bool
}

// print writes v as indented JSON, or text as is.
func (p printer) print(v any, text string) error {
	if !p.json {
		_, err := io.WriteString(p.w, text)
		return err
	}
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func get(ctx context.Context, c *client.Client, p printer, key string) error {
	v, err := c.Get(ctx, key)
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("key %q not found", key)
	}
	if err != nil {
		return err
	}
	out := struct {
		Key         string  `json:"key"`
		Value       *string `json:"value,omitempty"`
		ValueBase64 []byte  `json:"value_base64,omitempty"` // a value that is not UTF-8
	}{Key: key}
	if utf8.Valid(v) {
		s := string(v)
		out.Value = &s
	} else {
		out.ValueBase64 = v
	}
	return p.print(out, string(v)+"\n")
}

func put(ctx context.Context, c *client.Client, p printer, args []string, stdin io.Reader) error {
	var value []byte
	if len(args) == 2 {
		value = []byte(args[1])
	} else {
		var err error
		// One byte more than the limit tells a value that is too large.
		if value, err = io.ReadAll(io.LimitReader(stdin, kv.MaxValueSize+1)); err != nil {
			return fmt.Errorf("read the value from stdin: %w", err)
		}
		if len(value) > kv.MaxValueSize {
			return fmt.Errorf("the value on stdin is larger than the limit of %d bytes", kv.MaxValueSize)
		}
	}
	if _, err := c.Put(ctx, args[0], value); err != nil {
		return err
	}
	return p.print(struct {
		Key     string `json:"key"`
		Written bool   `json:"written"`
	}{args[0], true}, "OK\n")
}

func del(ctx context.Context, c *client.Client, p printer, key string) error {
	deleted, err := c.Delete(ctx, key)
	if err != nil {
		return err
	}
	text := "deleted\n"
	if !deleted {
		text = "not found, nothing deleted\n"
	}
	return p.print(struct {
		Key     string `json:"key"`
		Deleted bool   `json:"deleted"`
	}{key, deleted}, text)
}

// status prints every endpoint's raft state, with each member's match
// index and lag as the leader sees them. It fails if any endpoint did not
// answer, after printing what the others said.
func status(ctx context.Context, c *client.Client, p printer) error {
	all, err := c.Status(ctx)
	if err != nil {
		return err
	}
	type answer struct {
		Endpoint string         `json:"endpoint"`
		Status   *client.Status `json:"status,omitempty"`
		Error    string         `json:"error,omitempty"`
	}
	var (
		out    []answer
		failed []string
		leader *client.Status // the answering leader of the highest term
	)
	for i, ns := range all {
		a := answer{Endpoint: ns.Endpoint}
		if ns.Err != nil {
			a.Error = ns.Err.Error()
			failed = append(failed, ns.Endpoint)
		} else {
			a.Status = &all[i].Status
			if a.Status.Role == "leader" && (leader == nil || a.Status.Term > leader.Term) {
				leader = a.Status
			}
		}
		out = append(out, a)
	}

	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tROLE\tTERM\tLEADER\tCOMMIT\tAPPLIED\tMATCH\tLAG")
	for _, a := range out {
		if a.Status == nil {
			fmt.Fprintf(tw, "?\t%s\tunreachable\t-\t-\t-\t-\t-\t-\n", a.Endpoint)
			continue
		}
		st := a.Status
		match, lag := "-", "-"
		if leader != nil {
			if pr, ok := leader.Progress[st.Name]; ok {
				match, lag = fmt.Sprint(pr.Match), fmt.Sprint(pr.Lag)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", st.Name, a.Endpoint, st.Role, st.Term, st.Leader, st.Commit, st.Applied, match, lag)
	}
	tw.Flush()
	if err := p.print(out, b.String()); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d endpoints did not answer: %s", len(failed), len(all), strings.Join(failed, ", "))
	}
	return nil
}

// membersUsage lists the members subcommands and their arguments.
var membersUsage = map[string]int{"list": 0, "add": 2, "remove": 1, "promote": 1}

func checkMembersCommand(pos []string, learner bool) error {
	sub := "list"
	if len(pos) > 0 {
		sub = pos[0]
	}
	n, ok := membersUsage[sub]
	switch {
	case !ok:
		return fmt.Errorf("members %q: want list, add, remove or promote (see raftkv members -h)", sub)
	case len(pos) > 0 && len(pos)-1 != n:
		return fmt.Errorf("usage: raftkv members %s, got %d arguments", map[string]string{
			"list": "list", "add": "add NAME PEER_ADDR [--learner]", "remove": "remove NAME", "promote": "promote NAME"}[sub], len(pos)-1)
	case learner && sub != "add":
		return errors.New("--learner goes with members add")
	}
	return nil
}

// membersCommand lists the members, or changes them and prints the
// membership that results.
func membersCommand(ctx context.Context, c *client.Client, p printer, pos []string, learner bool) error {
	var (
		m    client.Membership
		err  error
		done string
	)
	sub := "list"
	if len(pos) > 0 {
		sub = pos[0]
	}
	switch sub {
	case "list":
		m, err = c.Membership(ctx)
	case "add":
		var opts []client.MemberOption
		role := "voter"
		if learner {
			opts, role = append(opts, client.AsLearner()), "learner"
		}
		m, err = c.AddMember(ctx, pos[1], pos[2], opts...)
		done = fmt.Sprintf("added %s (%s) as a %s\n", pos[1], pos[2], role)
	case "remove":
		m, err = c.RemoveMember(ctx, pos[1])
		done = fmt.Sprintf("removed %s\n", pos[1])
	case "promote":
		m, err = c.PromoteMember(ctx, pos[1])
		done = fmt.Sprintf("promoted %s to voter\n", pos[1])
	}
	switch {
	case errors.Is(err, client.ErrNotMember) && len(pos) > 1:
		return fmt.Errorf("%q is not a member of the cluster (see raftkv members)", pos[1])
	case err != nil:
		return err
	}
	var b strings.Builder
	b.WriteString(done)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tPEER ADDRESS\tROLE\tMATCH\tLAG")
	for _, mb := range m.Members {
		role := mb.Role
		if mb.Name == m.Leader {
			role += " (leader)"
		}
		if mb.Promote {
			role += " (joining)"
		}
		match, lag := "-", "-"
		if mb.Match != nil && mb.Lag != nil {
			match, lag = fmt.Sprint(*mb.Match), fmt.Sprint(*mb.Lag)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mb.Name, mb.ID, mb.Addr, role, match, lag)
	}
	tw.Flush()
	return p.print(m, b.String())
}

// transferLeader hands leadership to the member called name and prints it
// once the cluster agrees that it leads.
func transferLeader(ctx context.Context, c *client.Client, p printer, name string) error {
	if err := c.TransferLeader(ctx, name); err != nil {
		if errors.Is(err, client.ErrNotMember) {
			return fmt.Errorf("%q is not a member of the cluster (see raftkv members)", name)
		}
		return err
	}
	return p.print(struct {
		Leader string `json:"leader"`
	}{name}, name+" leads\n")
}
