package e2e

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchSnapshotWriteLatency is a benchmark, not a check: it reports the
// latency of a steady writer (one write every 10 ms, one at a time) on a
// 3-node serve cluster holding about 1 GB, with no snapshot in progress,
// while the nodes take a snapshot of it all, and while the leader sends it
// to a follower that lags past the compacted log. It runs only with
// RAFTKV_BENCH_SNAPSHOT=1 (RAFTKV_BENCH_SNAPSHOT_MIB sets the size, default
// 1000 values of 1 MiB), so CI never does:
//
//	RAFTKV_BENCH_SNAPSHOT=1 go test -run TestBenchSnapshotWriteLatency -v ./e2e
//
// "latency" is each write's own; "from when due" counts from when the
// schedule wanted it, so a stall also counts for the writes it delayed.
// The running nodes' WAL fsyncs per phase and the slowest writes, placed in
// time, tell a slow disk from a starved CPU. All three nodes share this
// machine's cores and disk, so the two nodes writing their snapshot at once
// compete with each other and with both WALs.
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
		// 100 writes a second leave a single writer room to catch up
		// after a stall on a shared machine.
		every    = 10 * time.Millisecond
		baseline = 1000 // writes before the snapshot: 10 s at the writer's pace
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

	// The WAL fsyncs of the running nodes, sampled at each phase's start
	// and end, tell a slow disk from a starved CPU.
	running := without(procs, lagging)
	syncs := func() []fsyncs {
		var out []fsyncs
		for _, p := range running {
			out = append(out, scrapeFsyncs(t, p))
		}
		return out
	}
	w := startSteadyWriter(t, leader.redis, every)
	atStart := syncs()
	var atSnap []fsyncs
	eventually(t, "the leader to start writing its snapshot", func() bool {
		if scrapeMetric(t, leader, "raftkv_snapshot_writing") == 0 && len(leader.records("snapshot taken")) == 0 {
			return false
		}
		atSnap = syncs()
		return true
	})
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

	atTaken := syncs()
	i := indexOf(procs, lagging)
	sendStart := time.Now()
	procs[i] = restartServe(t, lagging, dataDirs[i])
	caughtUp(t, procs[i], procs)
	sendEnd := time.Now()
	atEnd := syncs()
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
		t.Logf("%-20s  latency: %s;  from when due: %s", x.name, latencies(x.win.took), latencies(x.win.fromDue))
		if len(x.win.errs) > 0 {
			// Reported, not failed: this is a measurement.
			t.Logf("%-20s  %d writes failed, the first with: %v", x.name, len(x.win.errs), x.win.errs[0])
		}
	}
	for _, s := range w.slowest(5) {
		t.Logf("a write took %v, %v after the snapshot began (it took %v to write; the lagging node restarted %v after it began)",
			s.took.Round(time.Millisecond), s.at.Sub(snapStart).Round(time.Millisecond),
			snapEnd.Sub(snapStart).Round(time.Millisecond), sendStart.Sub(snapStart).Round(time.Millisecond))
	}
	for j, p := range running {
		t.Logf("%s's WAL fsyncs: before the snapshot %s; while taking it %s; while sending it %s", p.name,
			atSnap[j].since(atStart[j]), atTaken[j].since(atSnap[j]), atEnd[j].since(atTaken[j]))
	}
}

// fsyncs is a node's raftkv_wal_fsync_duration_seconds histogram.
type fsyncs struct {
	count   float64
	sum     float64
	buckets map[float64]float64 // cumulative count by upper bound
}

func scrapeFsyncs(t *testing.T, p *proc) fsyncs {
	t.Helper()
	f := fsyncs{buckets: make(map[float64]float64)}
	const name = "raftkv_wal_fsync_duration_seconds"
	for _, line := range scrape(t, p) {
		metric, value, ok := strings.Cut(line, " ")
		v, err := strconv.ParseFloat(value, 64)
		if !ok || err != nil {
			continue
		}
		switch {
		case metric == name+"_count":
			f.count = v
		case metric == name+"_sum":
			f.sum = v
		case strings.HasPrefix(metric, name+`_bucket{le="`):
			le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(metric, name+`_bucket{le="`), `"}`), 64)
			if err == nil {
				f.buckets[le] = v
			}
		}
	}
	return f
}

// since describes the fsyncs between before and f.
func (f fsyncs) since(before fsyncs) string {
	n := f.count - before.count
	if n == 0 {
		return "none"
	}
	// The slowest fsync is at most the lowest bound whose bucket holds them all.
	slowest := math.Inf(1)
	for le, c := range f.buckets {
		if c-before.buckets[le] == n && le < slowest {
			slowest = le
		}
	}
	mean := time.Duration((f.sum - before.sum) / n * 1e9).Round(time.Microsecond)
	if math.IsInf(slowest, 1) {
		top := 0.0
		for le := range f.buckets {
			if !math.IsInf(le, 1) {
				top = max(top, le)
			}
		}
		return fmt.Sprintf("%.0f, mean %v, slowest > %v", n, mean, time.Duration(top*1e9))
	}
	return fmt.Sprintf("%.0f, mean %v, slowest <= %v", n, mean, time.Duration(slowest*1e9))
}

// scrapeMetric returns the value of an unlabelled metric of p.
func scrapeMetric(t *testing.T, p *proc, name string) float64 {
	t.Helper()
	for _, line := range scrape(t, p) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s of %s: %v", name, p.name, err)
			}
			return f
		}
	}
	t.Fatalf("%s exports no %s", p.name, name)
	return 0
}

// scrape returns the lines of p's /metrics.
func scrape(t *testing.T, p *proc) []string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", p.name, resp.Status, err)
	}
	return strings.Split(string(b), "\n")
}
