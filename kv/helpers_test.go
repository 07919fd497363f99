package kv

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func b(s string) []byte { return []byte(s) }

// bs makes a list of byte strings; empty ones are nil, as decoded.
func bs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		if s != "" {
			out[i] = []byte(s)
		}
	}
	return out
}

// applyNext applies c at the index after the store's applied index.
func applyNext(t testing.TB, s *Store, c Command) Result {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(%v) = %v", c.Op, err)
	}
	return s.Apply(s.AppliedIndex()+1, c.Marshal())
}

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return buf.Bytes()
}

func restored(t testing.TB, snap []byte) *Store {
	t.Helper()
	s := New()
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return s
}

// sameResult compares results by meaning: nil and empty slices are equal.
func sameResult(a, b Result) bool {
	if a.Err != b.Err || a.Int != b.Int || !sameValue(a.Value, b.Value) ||
		len(a.Values) != len(b.Values) || len(a.Keys) != len(b.Keys) || !bytes.Equal(a.Cursor, b.Cursor) {
		return false
	}
	for i := range a.Values {
		if !sameValue(a.Values[i], b.Values[i]) {
			return false
		}
	}
	for i := range a.Keys {
		if !bytes.Equal(a.Keys[i], b.Keys[i]) {
			return false
		}
	}
	return true
}

func sameValue(a, b Value) bool { return a.Found == b.Found && bytes.Equal(a.Data, b.Data) }

func (v Value) String() string {
	if !v.Found {
		return "nil"
	}
	return fmt.Sprintf("%q", v.Data)
}

func (r Result) String() string {
	var parts []string
	if r.Err != nil {
		parts = append(parts, "err="+r.Err.Error())
	}
	if r.Value.Found {
		parts = append(parts, "value="+r.Value.String())
	}
	if r.Int != 0 {
		parts = append(parts, fmt.Sprintf("int=%d", r.Int))
	}
	if r.Values != nil {
		parts = append(parts, fmt.Sprintf("values=%v", r.Values))
	}
	if r.Keys != nil || r.Cursor != nil {
		parts = append(parts, fmt.Sprintf("keys=%q cursor=%q", r.Keys, r.Cursor))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
