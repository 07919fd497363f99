package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestOriginalForm(t *testing.T) {
	var stderr bytes.Buffer
	cfg, o, err := parseArgs([]string{"127.0.0.1:7000", "--http-addr", "127.0.0.1:8080", "127.0.0.1:7001", "127.0.0.1:7002"}, &stderr, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("raftkv-data", "127.0.0.1-7000"); cfg.DataDir != want {
		t.Errorf("data dir %q, want %q", cfg.DataDir, want)
	}
	if !strings.Contains(stderr.String(), cfg.DataDir) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr %q, want one line naming the data directory", stderr.String())
	}
	if cfg.Name != "127.0.0.1:7000" || len(o.founders) != 3 {
		t.Errorf("name %q founders %v, want the first address and three founders", cfg.Name, o.founders)
	}
	if o.httpAddr != "127.0.0.1:8080" {
		t.Errorf("--http-addr between addresses was not parsed: %q", o.httpAddr)
	}

	// The same peers listed in another order, as the other terminals do,
	// give the same cluster.
	_, other, err := parseArgs([]string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7000"}, &stderr, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	byID := func(ms []node.Member) []node.Member {
		return slices.SortedFunc(slices.Values(ms), func(a, b node.Member) int { return cmp.Compare(a.ID, b.ID) })
	}
	if !slices.Equal(byID(other.founders), byID(o.founders)) {
		t.Error("rotating the addresses changed the founders")
	}
}

func TestServeFlagsAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg, o, err := parseArgs([]string{"serve", "--id", "n2", "--tick-interval", "50ms"}, &bytes.Buffer{}, env(map[string]string{
		"RAFTKV_DATA_DIR":         dir,
		"RAFTKV_CLUSTER":          "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003",
		"RAFTKV_ID":               "n9", // the flag wins
		"RAFTKV_LOG_FORMAT":       "json",
		"RAFTKV_ELECTION_TICKS":   "20",
		"RAFTKV_READ_MODE":        "lease",
		"RAFTKV_CATCH_UP_ENTRIES": "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "n2" || cfg.DataDir != dir || len(o.founders) != 3 {
		t.Errorf("got name %q dir %q founders %v", cfg.Name, cfg.DataDir, o.founders)
	}
	if o.logFormat != "json" || cfg.ElectionTicks != 20 || cfg.TickInterval != 50*time.Millisecond || !cfg.LeaseReads {
		t.Errorf("got log format %q, election ticks %d, tick %v, lease reads %v", o.logFormat, cfg.ElectionTicks, cfg.TickInterval, cfg.LeaseReads)
	}
	if cfg.CatchUpEntries != -1 {
		t.Errorf("--catch-up-entries 0: got node CatchUpEntries %d, want -1 (none)", cfg.CatchUpEntries)
	}
}

func TestServeRestartNeedsOnlyDataDir(t *testing.T) {
	dir := t.TempDir()
	_, _, err := parseArgs([]string{"serve", "--data-dir", dir}, &bytes.Buffer{}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "--id and --cluster") {
		t.Fatalf("serve on an empty data dir without --id: got %v, want an error asking for --id and --cluster", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{},
		{"127.0.0.1"},
		{"127.0.0.1:7000", "127.0.0.1:7000"},
		{"serve", "extra"},
		{"serve", "--data-dir", "d", "--id", "n1"},
		{"serve", "--data-dir", "d", "--id", "n1", "--cluster", "n1"},
		{"serve", "--data-dir", "d", "--id", "n1", "--cluster", "n1=a:1,n1=a:2"},
		{"serve", "--data-dir", "d", "--id", "n1", "--cluster", "n1=a:1,n2=a:1"},
		{"serve", "--data-dir", "d", "--id", "n1", "--cluster", "n1=a:1", "--join", "http://a:2"},
		{"serve", "--data-dir", "d", "--id", "n1", "--join", "http://a:2"},
		{"serve", "--data-dir", "d", "--peer-addr", "a:1", "--join", "http://a:2"},
		{"serve", "--data-dir", "d", "--id", "n 1", "--peer-addr", "a:1", "--join", "http://a:2"},
		{"--status-interval", "-1s", "127.0.0.1:7000"},
		{"--read-mode", "fast", "127.0.0.1:7000"},
		{"--catch-up-entries", "-1", "127.0.0.1:7000"},
	} {
		if _, _, err := parseArgs(args, &bytes.Buffer{}, env(nil)); err == nil {
			t.Errorf("parseArgs(%q) succeeded, want a usage error", args)
		}
	}
	if _, _, err := parseArgs([]string{"127.0.0.1:7000"}, &bytes.Buffer{}, env(map[string]string{"RAFTKV_ELECTION_TICKS": "many"})); err == nil || !strings.Contains(err.Error(), "RAFTKV_ELECTION_TICKS") {
		t.Errorf("bad environment value: got %v, want an error naming the variable", err)
	}
	var stderr bytes.Buffer
	if _, _, err := parseArgs([]string{"-h"}, &stderr, env(nil)); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "usage") {
		t.Errorf("-h: got %v and %q, want ErrHelp and the usage", err, stderr.String())
	}
}
