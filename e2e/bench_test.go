package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestBenchSnapshotWriteLatency is a benchmark, not a check: it reports the
// latency of a steady writer (one write every 5 ms, one at a time) on a
// 3-node serve cluster holding about 1 GB, with no snapshot in progress,
// while the nodes take a snapshot of it all, and while the leader sends it
// to a follower that lags past the compacted log. It runs only with
// RAFTKV_BENCH_SNAPSHOT=1 (RAFTKV_BENCH_SNAPSHOT_MIB sets the size, default
// 1000 values of 1 MiB), so CI never does:
//
//	RAFTKV_BENCH_SNAPSHOT=1 go test -run TestBenchSnapshotWriteLatency -v ./e2e
//
// All three nodes share this machine's cores and disk, so the two nodes
// writing their snapshot at once compete with each other and with the WAL.
func TestBenchSnapshotWriteLatency(t *testing.T) {
	if os.Getenv("RAFTKV_BENCH_SNAPSHOT") == "" {
		t.Skip("a benchmark: set RAFTKV_BENCH_SNAPSHOT=1 to run it")
	}
	needBinary(t)
	values := 1000
	if s := os.Getenv("RAFTKV_BENCH_SNAPSHOT_MIB"); s != "" {
		var err error
		if values, err = strconv.Atoi(s); err != nil || values <= 0 {
			t.Fatalf("RAFTKV_BENCH_SNAPSHOT_MIB=%q: want a positive number", s)
		}
	}
	const (
		valueSize = 1 << 20
		every     = 5 * time.Millisecond
		baseline  = 2000 // writes before the snapshot: 10 s at the writer's pace
	)
	// The first snapshot comes once the values and the baseline's writes
	// are applied; the log keeps nothing below it, so the follower that was
	// down needs the snapshot.
	snapEvery := values + baseline
	procs, dataDirs := serveCluster(t, "RAFTKV_SNAPSHOT_ENTRIES="+strconv.Itoa(snapEvery), "RAFTKV_CATCH_UP_ENTRIES=0")
	leader, _ := agreedLeader(t, procs...)
	lagging := without(procs, leader)[0]
	lagging.kill()

	begin := time.Now()
	writeBig(t, leader.redis, values, valueSize)
	t.Logf("wrote %d values of %d bytes in %v", values, valueSize, time.Since(begin).Round(time.Millisecond))

	w := startSteadyWriter(t, leader.redis, every)
	// The snapshot is taken on the two running nodes at about the same
	// index; the lagging node restarts once the leader's is on disk.
	var taken map[*proc]map[string]any
	eventually(t, "both running nodes to take their snapshot", func() bool {
		taken = make(map[*proc]map[string]any)
		for _, p := range without(procs, lagging) {
			if recs := p.records("snapshot taken"); len(recs) > 0 {
				taken[p] = recs[0]
			}
		}
		return len(taken) == 2
	})
	snapStart, snapEnd := time.Time{}, time.Time{}
	for p, rec := range taken {
		took, _ := rec["took"].(float64)
		end := logTime(t, rec)
		start := end.Add(-time.Duration(took))
		if snapStart.IsZero() || start.Before(snapStart) {
			snapStart = start
		}
		if end.After(snapEnd) {
			snapEnd = end
		}
		size, _ := rec["bytes"].(float64)
		t.Logf("%s took a snapshot of %d bytes in %v (%v)", p.name, int64(size), time.Duration(took).Round(time.Millisecond), rec["rate"])
	}

	i := indexOf(procs, lagging)
	sendStart := time.Now()
	procs[i] = restartServe(t, lagging, dataDirs[i])
	caughtUp(t, procs[i], procs)
	sendEnd := time.Now()
	eventually(t, "the writer to write what was due until then", func() bool { return w.caughtUpTo(sendEnd) })
	w.stop()
	for _, rec := range procs[i].records("snapshot transfer done") {
		took, _ := rec["took"].(float64)
		size, _ := rec["bytes"].(float64)
		t.Logf("%s: %v of %d bytes in %v (%v); caught up %v after its restart", lagging.name, rec["transfer"], int64(size),
			time.Duration(took).Round(time.Millisecond), rec["rate"], sendEnd.Sub(sendStart).Round(time.Millisecond))
	}

	windows := []struct {
		name string
		win  window
	}{
		{"no snapshot", w.between(time.Time{}, snapStart)},
		{"taking the snapshot", w.between(snapStart, snapEnd)},
		{"sending the snapshot", w.between(sendStart, sendEnd)},
	}
	for _, x := range windows {
		for _, err := range x.win.errs {
			t.Errorf("%s: a write failed: %v", x.name, err)
		}
		t.Logf("%-20s  latency: %s;  from when due: %s", x.name, latencies(x.win.took), latencies(x.win.fromDue))
	}
}
