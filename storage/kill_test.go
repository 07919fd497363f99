package storage

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/raft/raftpb"
)

const killChildEnv = "STORAGE_TEST_KILL_CHILD_DIR"

// TestKillDuringSaves runs Saves in a child process, kills it with SIGKILL
// at an arbitrary moment, and checks that everything the child reported
// acknowledged (a Save that returned) is there after recovery. It repeats
// on the same directory, each child continuing the log.
func TestKillDuringSaves(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	var acked uint64
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringSaves$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		// Let the child acknowledge a few hundred entries, then kill it
		// wherever it is.
		for start := acked; lines.Scan(); {
			n, err := strconv.ParseUint(strings.TrimPrefix(lines.Text(), "acked "), 10, 64)
			if err != nil {
				t.Fatalf("child said %q", lines.Text())
			}
			acked = n
			if acked >= start+300 {
				break
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		s, err := Open(dir, Options{NodeID: 1, ClusterID: 1})
		if err != nil {
			t.Fatalf("round %d: recovery: %v", round, err)
		}
		last, _ := s.LastIndex()
		if last < acked {
			t.Fatalf("round %d: last index %d, but %d was acknowledged", round, last, acked)
		}
		got, err := s.Entries(1, acked+1, 1<<30)
		if err != nil || !reflect.DeepEqual(got, killEntries(1, acked)) {
			t.Fatalf("round %d: acknowledged entries differ after recovery (%d read, %v)", round, len(got), err)
		}
		_ = s.Close()
	}
}

func killEntries(lo, hi uint64) []raftpb.Entry {
	var es []raftpb.Entry
	for i := lo; i <= hi; i++ {
		es = append(es, raftpb.Entry{Index: i, Term: 1, Data: []byte(strings.Repeat(strconv.FormatUint(i, 10), 20))})
	}
	return es
}

// killChild appends batches of entries forever, printing the last index
// of each Save once it has returned.
func killChild(dir string) {
	s, err := Open(dir, Options{NodeID: 1, ClusterID: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	last, _ := s.LastIndex()
	for batch := uint64(1); ; batch = batch%16 + 1 {
		if err := s.Save(raftpb.HardState{Term: 1, Commit: last}, killEntries(last+1, last+batch)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		last += batch
		if _, err := fmt.Printf("acked %d\n", last); err != nil {
			os.Exit(0) // the parent is gone
		}
	}
}
