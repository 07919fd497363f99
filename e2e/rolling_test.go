package e2e

import (
	"syscall"
	"testing"
	"time"
)

// TestRollingRestartUnderLoad restarts every node of a serving cluster in
// turn, as an operator upgrading it would (SIGTERM, then the same data
// directory), while register clients run on every node. Leadership may
// move only by hand-off: no election timer fires anywhere, and every new
// term is one a stopping leader handed over. No command fails twice in a
// row (a failed command succeeds on its one retry), the history is
// linearizable and every acknowledged write is on every node.
func TestRollingRestartUnderLoad(t *testing.T) {
	needBinary(t)
	procs, dataDirs := serveCluster(t)
	_, term := agreedLeader(t, procs...)
	elected := time.Now() // the first election is over

	ld := startLoad(t, redisAddrs(procs), 6)
	ld.answeredSinceNow(t, 20, "before the first restart")
	var stopped []*proc // every incarnation that stopped, for its logs
	for i, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(); code != 0 {
			t.Fatalf("%s exited with %d after SIGTERM, want 0", p.name, code)
		}
		stopped = append(stopped, p)
		procs[i] = restartServe(t, p, dataDirs[i])
		caughtUp(t, procs[i], procs)
		ld.answeredSinceNow(t, 20, "after restarting "+p.name)
	}
	ld.stop()

	// Leadership moved only by hand-off.
	_, lastTerm := agreedLeader(t, procs...)
	handOffs := 0
	for _, p := range append(stopped, procs...) {
		handOffs += len(p.records("handed leadership over"))
		for _, msg := range []string{"leadership transfer did not complete; stopping anyway", "no active peer to hand leadership to"} {
			for _, rec := range p.records(msg) {
				t.Errorf("%s: a stopping leader did not hand over: %v", p.name, rec)
			}
		}
		for _, rec := range p.records("role changed") {
			if rec["role"] == "precandidate" && logTime(t, rec).After(elected) {
				t.Errorf("%s: an election timer fired: %v", p.name, rec)
			}
		}
	}
	if handOffs == 0 {
		t.Error("no stopping leader handed over: the leader was never restarted")
	}
	if lastTerm != term+uint64(handOffs) {
		t.Errorf("term went from %d to %d with %d hand-offs; every new term should be a hand-off's", term, lastTerm, handOffs)
	}
	t.Logf("%d restarts, %d hand-offs, term %d to %d", len(stopped), handOffs, term, lastTerm)

	// A failed command succeeds on its retry.
	for _, w := range ld.workers {
		if w.maxStreak > 1 {
			t.Errorf("client %d: %d commands failed in a row, want at most one before an answer", w.id, w.maxStreak)
		}
		t.Logf("client %d: %d answers; at most %d failures in a row; longest wait for an answer after a failure %v", w.id, w.ok.Load(), w.maxStreak, w.maxOutage)
	}

	ld.checkAcked(t, procs)
	ld.hist.check(t)
}

// caughtUp waits until p has applied everything the leader of procs had
// committed once p was back.
func caughtUp(t *testing.T, p *proc, procs []*proc) {
	t.Helper()
	leader, _ := agreedLeader(t, procs...)
	var commit uint64
	eventually(t, "the leader's status", func() bool {
		st, ok := leader.status()
		commit = st.Commit
		return ok
	})
	eventually(t, p.name+" to apply what the leader had committed", func() bool {
		st, ok := p.status()
		return ok && st.Applied >= commit
	})
}

// logTime returns the time of a JSON log record.
func logTime(t *testing.T, rec map[string]any) time.Time {
	t.Helper()
	s, _ := rec["time"].(string)
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log record %v: time: %v", rec, err)
	}
	return tm
}
