package kv

import (
	"testing"
)

func incr(client, seq uint64) Command {
	return Command{Op: OpIncrBy, ID: RequestID{ClientID: client, Seq: seq}, Key: b("n"), Delta: 1}
}

func TestExactlyOnce(t *testing.T) {
	s := New()
	get := Command{Op: OpGet, Key: b("n")}
	value := func() string { return string(s.Read(&get).Value.Data) }
	steps := []struct {
		name  string
		cmd   Command
		want  Result
		value string
	}{
		{"first", incr(1, 1), Result{Int: 1}, "1"},
		{"retry of the last", incr(1, 1), Result{Int: 1}, "1"},
		{"next", incr(1, 2), Result{Int: 2}, "2"},
		{"retry again", incr(1, 2), Result{Int: 2}, "2"},
		{"older", incr(1, 1), Result{Err: ErrRequestTooOld}, "2"},
		{"other client", incr(2, 1), Result{Int: 3}, "3"},
		{"gap in seq", incr(1, 10), Result{Int: 4}, "4"},
		{"skipped seq now too old", incr(1, 5), Result{Err: ErrRequestTooOld}, "4"},
		{"unknown client past seq 1", incr(3, 2), Result{Err: ErrSessionExpired}, "4"},
		{"no session", incr(0, 0), Result{Int: 5}, "5"},
		{"no session again", incr(0, 0), Result{Int: 6}, "6"},
		{"append makes n a non-integer", Command{Op: OpAppend, ID: RequestID{ClientID: 4, Seq: 1}, Key: b("n"), Value: b("x")}, Result{Int: 2}, "6x"},
		{"failed incr", incr(5, 1), Result{Err: ErrNotInteger}, "6x"},
		{"set n back", Command{Op: OpSet, Key: b("n"), Value: b("0")}, Result{Int: 1}, "0"},
		{"error results are remembered", incr(5, 1), Result{Err: ErrNotInteger}, "0"},
		{"reads are not remembered", Command{Op: OpGet, ID: RequestID{ClientID: 6, Seq: 3}, Key: b("n")}, Result{Value: found("0")}, "0"},
	}
	for _, st := range steps {
		got := applyNext(t, s, st.cmd)
		if !sameResult(got, st.want) || value() != st.value {
			t.Fatalf("%s: Apply = %v, n = %q; want %v, %q", st.name, got, value(), st.want, st.value)
		}
	}
	if _, ok := s.sessions.get(6); ok {
		t.Error("a read created a session")
	}
}

func TestSetGetOldReplayReturnsOriginalOldValue(t *testing.T) {
	s := New()
	applyNext(t, s, Command{Op: OpSet, Key: b("k"), Value: b("a")})
	c := Command{Op: OpSet, ID: RequestID{ClientID: 9, Seq: 1}, Key: b("k"), Value: b("b"), GetOld: true}
	first := applyNext(t, s, c)
	applyNext(t, s, Command{Op: OpSet, Key: b("k"), Value: b("c")})
	again := applyNext(t, s, c)
	if !sameResult(first, Result{Int: 1, Value: found("a")}) || !sameResult(again, first) {
		t.Errorf("first = %v, replay = %v; want both {int=1 value=a}", first, again)
	}
	if v := s.Read(&Command{Op: OpGet, Key: b("k")}).Value; string(v.Data) != "c" {
		t.Errorf("replay changed the value to %v", v)
	}
}

func TestSessionEvictionByCount(t *testing.T) {
	s := newStore(sessionLimits{count: 3, bytes: 1 << 20})
	for c := uint64(1); c <= 3; c++ {
		applyNext(t, s, incr(c, 1))
	}
	// A retry touches client 1, so client 2 is now the least recent.
	applyNext(t, s, incr(1, 1))
	applyNext(t, s, incr(4, 1))
	if r := applyNext(t, s, incr(2, 2)); r.Err != ErrSessionExpired {
		t.Errorf("evicted client 2, seq 2: %v, want ErrSessionExpired", r)
	}
	if r := applyNext(t, s, incr(1, 1)); !sameResult(r, Result{Int: 1}) {
		t.Errorf("client 1 retry: %v, want the original {int=1}", r)
	}
	if n := s.sessions.byClient.Len(); n != 3 {
		t.Errorf("%d sessions, want 3", n)
	}
	// The price of forgetting: a replayed first request applies again.
	if r := applyNext(t, s, incr(2, 1)); r.Err != nil {
		t.Errorf("evicted client 2, seq 1: %v", r)
	}
}

func TestSessionEvictionByBytes(t *testing.T) {
	s := newStore(sessionLimits{count: 100, bytes: 3*sessionOverhead + 99})
	big := make([]byte, 100)
	applyNext(t, s, Command{Op: OpSet, Key: b("k"), Value: big})
	for c := uint64(1); c <= 2; c++ {
		applyNext(t, s, incr(c, 1))
	}
	// Remembers 100 bytes of old value: 3 sessions now exceed the budget.
	applyNext(t, s, Command{Op: OpSet, ID: RequestID{ClientID: 3, Seq: 1}, Key: b("k"), Value: b("v"), GetOld: true})
	if n, by := s.sessions.byClient.Len(), s.sessions.bytes; n != 2 || by != 2*sessionOverhead+100 {
		t.Errorf("%d sessions of %d bytes, want 2 of %d", n, by, 2*sessionOverhead+100)
	}
	if _, ok := s.sessions.get(1); ok {
		t.Error("the least recent client 1 was kept")
	}
	// A session alone above the byte budget is still kept: it is the one
	// being answered.
	s = newStore(sessionLimits{count: 100, bytes: 10})
	applyNext(t, s, Command{Op: OpSet, Key: b("k"), Value: big})
	setGet := Command{Op: OpSet, ID: RequestID{ClientID: 1, Seq: 1}, Key: b("k"), Value: b("v"), GetOld: true}
	applyNext(t, s, setGet)
	if r := applyNext(t, s, setGet); len(r.Value.Data) != len(big) {
		t.Errorf("retry answered %v, want the 100-byte old value", r)
	}
}
