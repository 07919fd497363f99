package kv

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

var (
	missing = Value{}
	ok1     = Result{Int: 1}
)

func found(s string) Value { return Value{Data: []byte(s), Found: true} }

// TestCommands runs each command against a store prepared by setup, and
// checks its result and the keys afterwards, as Redis would answer.
func TestCommands(t *testing.T) {
	set := func(k, v string) Command { return Command{Op: OpSet, Key: b(k), Value: b(v)} }
	for _, tc := range []struct {
		name  string
		setup []Command
		cmd   Command
		want  Result
		after map[string]string // the whole key space afterwards; nil = not checked
	}{
		{"get missing", nil, Command{Op: OpGet, Key: b("k")}, Result{}, nil},
		{"get", []Command{set("k", "v")}, Command{Op: OpGet, Key: b("k")}, Result{Value: found("v")}, nil},
		{"get empty value", []Command{set("k", "")}, Command{Op: OpGet, Key: b("k")}, Result{Value: found("")}, nil},
		{"get empty key", []Command{set("", "v")}, Command{Op: OpGet}, Result{Value: found("v")}, nil},

		{"set", nil, set("k", "v"), ok1, map[string]string{"k": "v"}},
		{"set overwrites", []Command{set("k", "a")}, set("k", "b"), ok1, map[string]string{"k": "b"}},
		{"set nx missing", nil, Command{Op: OpSet, Key: b("k"), Value: b("v"), NX: true}, ok1, map[string]string{"k": "v"}},
		{"set nx existing", []Command{set("k", "a")}, Command{Op: OpSet, Key: b("k"), Value: b("b"), NX: true}, Result{}, map[string]string{"k": "a"}},
		{"set xx missing", nil, Command{Op: OpSet, Key: b("k"), Value: b("v"), XX: true}, Result{}, map[string]string{}},
		{"set xx existing", []Command{set("k", "a")}, Command{Op: OpSet, Key: b("k"), Value: b("b"), XX: true}, ok1, map[string]string{"k": "b"}},
		{"set get missing", nil, Command{Op: OpSet, Key: b("k"), Value: b("v"), GetOld: true}, Result{Int: 1, Value: missing}, map[string]string{"k": "v"}},
		{"set get existing", []Command{set("k", "a")}, Command{Op: OpSet, Key: b("k"), Value: b("b"), GetOld: true}, Result{Int: 1, Value: found("a")}, map[string]string{"k": "b"}},
		{"set nx get existing", []Command{set("k", "a")}, Command{Op: OpSet, Key: b("k"), Value: b("b"), NX: true, GetOld: true}, Result{Value: found("a")}, map[string]string{"k": "a"}},
		{"set xx get missing", nil, Command{Op: OpSet, Key: b("k"), Value: b("b"), XX: true, GetOld: true}, Result{}, map[string]string{}},

		{"del", []Command{set("a", "1"), set("b", "2")}, Command{Op: OpDel, Keys: bs("a", "c", "a")}, ok1, map[string]string{"b": "2"}},
		{"del none", nil, Command{Op: OpDel, Keys: bs("a")}, Result{}, map[string]string{}},
		{"exists counts repeats", []Command{set("a", "1")}, Command{Op: OpExists, Keys: bs("a", "a", "b")}, Result{Int: 2}, nil},

		{"append missing", nil, Command{Op: OpAppend, Key: b("k"), Value: b("abc")}, Result{Int: 3}, map[string]string{"k": "abc"}},
		{"append", []Command{set("k", "ab")}, Command{Op: OpAppend, Key: b("k"), Value: b("cd")}, Result{Int: 4}, map[string]string{"k": "abcd"}},
		{"append empty to missing", nil, Command{Op: OpAppend, Key: b("k")}, Result{}, map[string]string{"k": ""}},
		{"append beyond limit", []Command{set("k", strings.Repeat("x", MaxValueSize))}, Command{Op: OpAppend, Key: b("k"), Value: b("y")}, Result{Err: ErrValueTooLarge}, nil},

		{"incr missing", nil, Command{Op: OpIncrBy, Key: b("n"), Delta: 1}, ok1, map[string]string{"n": "1"}},
		{"incrby", []Command{set("n", "10")}, Command{Op: OpIncrBy, Key: b("n"), Delta: 5}, Result{Int: 15}, map[string]string{"n": "15"}},
		{"decr below zero", []Command{set("n", "0")}, Command{Op: OpIncrBy, Key: b("n"), Delta: -1}, Result{Int: -1}, map[string]string{"n": "-1"}},
		{"incr non-integer", []Command{set("n", "abc")}, Command{Op: OpIncrBy, Key: b("n"), Delta: 1}, Result{Err: ErrNotInteger}, map[string]string{"n": "abc"}},
		{"incr empty", []Command{set("n", "")}, Command{Op: OpIncrBy, Key: b("n"), Delta: 1}, Result{Err: ErrNotInteger}, nil},
		{"incr leading zero", []Command{set("n", "01")}, Command{Op: OpIncrBy, Key: b("n"), Delta: 1}, Result{Err: ErrNotInteger}, nil},
		{"incr space", []Command{set("n", " 1")}, Command{Op: OpIncrBy, Key: b("n"), Delta: 1}, Result{Err: ErrNotInteger}, nil},
		{"incr overflow", []Command{set("n", "9223372036854775807")}, Command{Op: OpIncrBy, Key: b("n"), Delta: 1}, Result{Err: ErrOverflow}, map[string]string{"n": "9223372036854775807"}},
		{"decr overflow", []Command{set("n", "-9223372036854775808")}, Command{Op: OpIncrBy, Key: b("n"), Delta: -1}, Result{Err: ErrOverflow}, nil},
		{"incrby min", nil, Command{Op: OpIncrBy, Key: b("n"), Delta: math.MinInt64}, Result{Int: math.MinInt64}, map[string]string{"n": "-9223372036854775808"}},
		{"incr out of range value", []Command{set("n", "9223372036854775808")}, Command{Op: OpIncrBy, Key: b("n"), Delta: -1}, Result{Err: ErrNotInteger}, nil},

		{"cas match", []Command{set("k", "a")}, Command{Op: OpCAS, Key: b("k"), Expected: b("a"), Value: b("b")}, ok1, map[string]string{"k": "b"}},
		{"cas mismatch", []Command{set("k", "a")}, Command{Op: OpCAS, Key: b("k"), Expected: b("x"), Value: b("b")}, Result{}, map[string]string{"k": "a"}},
		{"cas missing never matches", nil, Command{Op: OpCAS, Key: b("k"), Value: b("b")}, Result{}, map[string]string{}},
		{"cas empty value matches empty", []Command{set("k", "")}, Command{Op: OpCAS, Key: b("k"), Value: b("b")}, ok1, map[string]string{"k": "b"}},
		{"cas expect absent", nil, Command{Op: OpCAS, Key: b("k"), Value: b("b"), ExpectAbsent: true}, ok1, map[string]string{"k": "b"}},
		{"cas expect absent present", []Command{set("k", "")}, Command{Op: OpCAS, Key: b("k"), Value: b("b"), ExpectAbsent: true}, Result{}, map[string]string{"k": ""}},

		{"mset", []Command{set("a", "0")}, Command{Op: OpMSet, Keys: bs("a", "b", "a"), Values: bs("1", "2", "3")}, Result{}, map[string]string{"a": "3", "b": "2"}},
		{"mget", []Command{set("a", "1"), set("c", "")}, Command{Op: OpMGet, Keys: bs("a", "b", "c")}, Result{Values: []Value{found("1"), missing, found("")}}, nil},
		{"strlen", []Command{set("k", "abc")}, Command{Op: OpStrLen, Key: b("k")}, Result{Int: 3}, nil},
		{"strlen missing", nil, Command{Op: OpStrLen, Key: b("k")}, Result{}, nil},
		{"count", []Command{set("a", ""), set("b", ""), set("a", "")}, Command{Op: OpCount}, Result{Int: 2}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			for _, c := range tc.setup {
				if r := applyNext(t, s, c); r.Err != nil {
					t.Fatalf("setup %v: %v", c.Op, r.Err)
				}
			}
			if got := applyNext(t, s, tc.cmd); !sameResult(got, tc.want) {
				t.Errorf("Apply = %v, want %v", got, tc.want)
			}
			if tc.cmd.Op.ReadOnly() {
				if got := s.Read(&tc.cmd); !sameResult(got, tc.want) {
					t.Errorf("Read = %v, want %v", got, tc.want)
				}
			}
			if tc.after != nil {
				checkContents(t, s, tc.after)
			}
		})
	}
}

// checkContents checks the whole key space of s against want.
func checkContents(t *testing.T, s *Store, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	s.tree.Ascend(func(it item) bool {
		got[string(it.key)] = string(it.value)
		return true
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("contents = %v, want %v", got, want)
	}
}

func TestScan(t *testing.T) {
	s := New()
	for _, k := range []string{"a", "p", "p/1", "p/2", "p/3", "p0", "q"} {
		applyNext(t, s, Command{Op: OpSet, Key: b(k), Value: b("v")})
	}
	for _, tc := range []struct {
		name          string
		start, prefix string
		limit         int
		wantKeys      []string
		wantCursor    string
	}{
		{"all", "", "", 0, []string{"a", "p", "p/1", "p/2", "p/3", "p0", "q"}, ""},
		{"paged", "", "", 3, []string{"a", "p", "p/1"}, "p/2"},
		{"from cursor", "p/2", "", 3, []string{"p/2", "p/3", "p0"}, "q"},
		{"start between keys", "p/10", "", 2, []string{"p/2", "p/3"}, "p0"},
		{"prefix", "", "p/", 0, []string{"p/1", "p/2", "p/3"}, ""},
		{"prefix paged", "", "p/", 2, []string{"p/1", "p/2"}, "p/3"},
		{"prefix last page", "p/3", "p/", 2, []string{"p/3"}, ""},
		{"start after prefix range", "p/9", "p/", 2, nil, ""},
		{"prefix exact page", "", "p/", 3, []string{"p/1", "p/2", "p/3"}, ""},
		{"prefix no match", "", "z", 0, nil, ""},
		{"start past the end", "zz", "", 0, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Read(&Command{Op: OpScan, Key: b(tc.start), Prefix: b(tc.prefix), Limit: tc.limit})
			want := Result{Keys: bs(tc.wantKeys...), Cursor: b(tc.wantCursor)}
			if !sameResult(got, want) {
				t.Errorf("Scan = %v, want %v", got, want)
			}
		})
	}
}

func TestScanPageBounds(t *testing.T) {
	s := New()
	keys := make([][]byte, MaxScanLimit+10)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%05d", i)
	}
	applyNext(t, s, Command{Op: OpMSet, Keys: keys, Values: make([][]byte, len(keys))})
	if r := s.Read(&Command{Op: OpScan}); len(r.Keys) != DefaultScanLimit {
		t.Errorf("default page has %d keys, want %d", len(r.Keys), DefaultScanLimit)
	}
	if r := s.Read(&Command{Op: OpScan, Limit: 1 << 30}); len(r.Keys) != MaxScanLimit || !bytes.Equal(r.Cursor, keys[MaxScanLimit]) {
		t.Errorf("huge limit: %d keys, cursor %q; want %d, %q", len(r.Keys), r.Cursor, MaxScanLimit, keys[MaxScanLimit])
	}

	// Long keys: a page stops once it holds MaxScanBytes.
	s = New()
	long := make([][]byte, 20)
	for i := range long {
		long[i] = bytes.Repeat([]byte{byte('a' + i)}, MaxKeySize)
	}
	applyNext(t, s, Command{Op: OpMSet, Keys: long, Values: make([][]byte, len(long))})
	want := MaxScanBytes / MaxKeySize
	if r := s.Read(&Command{Op: OpScan, Limit: MaxScanLimit}); len(r.Keys) != want || !bytes.Equal(r.Cursor, long[want]) {
		t.Errorf("long keys: %d keys, cursor of %d bytes; want %d keys", len(r.Keys), len(r.Cursor), want)
	}
}

func TestApplyIndexes(t *testing.T) {
	s := New()
	set := (&Command{Op: OpSet, Key: b("k"), Value: b("v")}).Marshal()
	if r := s.Apply(0, set); r.Err != ErrStaleIndex {
		t.Errorf("Apply(0) = %v, want ErrStaleIndex", r)
	}
	if r := s.Apply(3, nil); !sameResult(r, Result{}) || s.AppliedIndex() != 3 {
		t.Errorf("empty entry: %v, applied %d; want {}, 3", r, s.AppliedIndex())
	}
	if r := s.Apply(3, set); r.Err != ErrStaleIndex {
		t.Errorf("Apply(3) again = %v, want ErrStaleIndex", r)
	}
	if r := s.Apply(5, []byte{9, 9, 9}); r.Err != ErrMalformed || s.AppliedIndex() != 5 {
		t.Errorf("garbage: %v, applied %d; want ErrMalformed, 5", r, s.AppliedIndex())
	}
	tooLarge := append([]byte{commandVersion, byte(OpGet), 0, 0, 0}, 0x81, 0x80, 0x04) // key length 65537
	tooLarge = append(tooLarge, make([]byte, MaxKeySize+1)...)
	if r := s.Apply(6, tooLarge); r.Err != ErrKeyTooLarge {
		t.Errorf("huge key: %v, want ErrKeyTooLarge", r)
	}
	if r := s.Apply(7, set); r.Err != nil || s.AppliedIndex() != 7 {
		t.Errorf("set: %v, applied %d", r, s.AppliedIndex())
	}
	if n := s.Read(&Command{Op: OpCount}).Int; n != 1 {
		t.Errorf("count = %d, want 1", n)
	}
}

func TestRead(t *testing.T) {
	s := New()
	if r := s.Read(&Command{Op: OpSet, Key: b("k")}); r.Err != ErrNotReadOnly {
		t.Errorf("Read(set) = %v, want ErrNotReadOnly", r)
	}
	if r := s.Read(&Command{Op: OpGet, Key: make([]byte, MaxKeySize+1)}); r.Err != ErrKeyTooLarge {
		t.Errorf("Read(huge key) = %v, want ErrKeyTooLarge", r)
	}
	if s.AppliedIndex() != 0 {
		t.Errorf("reads changed the applied index to %d", s.AppliedIndex())
	}
}

// TestValuesNeverChange checks the promise that lets readers keep values
// without copying: what the store hands out is never modified, even when
// APPEND extends the value in place, and appending to it cannot reach the
// store's spare capacity.
func TestValuesNeverChange(t *testing.T) {
	s := New()
	applyNext(t, s, Command{Op: OpSet, Key: b("k"), Value: b("a")})
	applyNext(t, s, Command{Op: OpAppend, Key: b("k"), Value: b("b")}) // now with spare capacity
	v := s.Read(&Command{Op: OpGet, Key: b("k")}).Value.Data
	cp := s.Checkpoint()
	applyNext(t, s, Command{Op: OpAppend, Key: b("k"), Value: b("c")})
	_ = append(v, 'X') // a careless reader
	if got := s.Read(&Command{Op: OpGet, Key: b("k")}).Value.Data; string(got) != "abc" {
		t.Errorf("value after appends = %q, want abc", got)
	}
	if string(v) != "ab" {
		t.Errorf("value handed out earlier became %q, want ab", v)
	}
	restoredCP := New()
	var buf bytes.Buffer
	if _, err := cp.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := restoredCP.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := restoredCP.Read(&Command{Op: OpGet, Key: b("k")}).Value.Data; string(got) != "ab" || cp.Index() != 2 {
		t.Errorf("checkpoint at %d holds %q, want 2, ab", cp.Index(), got)
	}
}
