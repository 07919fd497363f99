package kv

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// sampleCommands has one or more valid commands of every op, used by the
// round-trip tests and as fuzz seeds.
func sampleCommands() []Command {
	id := RequestID{ClientID: 1 << 60, Seq: 7}
	return []Command{
		{Op: OpGet, Key: b("k")},
		{Op: OpGet},
		{Op: OpSet, ID: id, Key: b("k"), Value: b("v")},
		{Op: OpSet, ID: id, Key: b("k"), Value: b("v"), NX: true, GetOld: true},
		{Op: OpSet, Key: b("k"), XX: true},
		{Op: OpDel, ID: id, Keys: bs("a", "b", "a")},
		{Op: OpExists, Keys: bs("a", "")},
		{Op: OpAppend, ID: id, Key: b("k"), Value: b("tail")},
		{Op: OpIncrBy, ID: id, Key: b("n"), Delta: -1},
		{Op: OpIncrBy, Key: b("n"), Delta: math.MinInt64},
		{Op: OpCAS, ID: id, Key: b("k"), Expected: b("old"), Value: b("new")},
		{Op: OpCAS, Key: b("k"), Value: b("new"), ExpectAbsent: true},
		{Op: OpMSet, ID: id, Keys: bs("a", "b"), Values: bs("1", "")},
		{Op: OpMGet, Keys: bs("a", "b", "c")},
		{Op: OpStrLen, Key: b("k")},
		{Op: OpScan, Key: b("p/b"), Prefix: b("p/"), Limit: 100},
		{Op: OpScan},
		{Op: OpCount},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		t.Run(c.Op.String(), func(t *testing.T) {
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate = %v", err)
			}
			enc := c.Marshal()
			if len(enc) != c.Size() {
				t.Errorf("len(Marshal) = %d, Size = %d", len(enc), c.Size())
			}
			got, err := UnmarshalCommand(enc)
			if err != nil {
				t.Fatalf("UnmarshalCommand: %v", err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v", got, c)
			}
			id, err := PeekRequestID(enc)
			if err != nil || id != c.ID {
				t.Errorf("PeekRequestID = %v, %v; want %v", id, err, c.ID)
			}
			// Every proper prefix is refused: lengths are all checked.
			for n := range len(enc) {
				if _, err := UnmarshalCommand(enc[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("prefix of %d bytes: err = %v, want ErrCorrupt", n, err)
				}
			}
			if _, err := UnmarshalCommand(append(enc, 0)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("trailing byte: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestUnmarshalCommandRejects(t *testing.T) {
	get := (&Command{Op: OpGet, Key: b("k")}).Marshal()
	with := func(i int, v byte) []byte {
		c := bytes.Clone(get)
		c[i] = v
		return c
	}
	bigCount := append([]byte{commandVersion, byte(OpMGet), 0, 0, 0}, 0xff, 0xff, 0x7f) // 2^21-1 keys
	fewBytes := append([]byte{commandVersion, byte(OpMGet), 0, 0, 0}, 100, 1, 'a')      // 100 keys in 2 bytes
	hugeKey := (&Command{Op: OpGet, Key: make([]byte, MaxKeySize+1)}).Marshal()
	hugeLimit := append([]byte{commandVersion, byte(OpScan), 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f)
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"version", with(0, 2), ErrCorrupt},
		{"op zero", with(1, 0), ErrCorrupt},
		{"op unknown", with(1, byte(opEnd)), ErrCorrupt},
		{"flag not allowed", with(2, flagNX), ErrCorrupt},
		{"bad varint", append([]byte{commandVersion, byte(OpCount), 0}, bytes.Repeat([]byte{0xff}, 11)...), ErrCorrupt},
		{"too many keys", bigCount, ErrTooManyKeys},
		{"count beyond input", fewBytes, ErrCorrupt},
		{"key too large", hugeKey, ErrKeyTooLarge},
		{"scan limit", hugeLimit, ErrCorrupt},
		{"nx and xx", (&Command{Op: OpSet, NX: true, XX: true}).Marshal(), ErrSyntax},
		{"seq without client", (&Command{Op: OpCount, ID: RequestID{Seq: 1}}).Marshal(), ErrBadRequestID},
		{"too large", make([]byte, MaxCommandSize+1), ErrCommandTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalCommand(tc.in)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	big := make([]byte, MaxValueSize+1)
	for _, tc := range []struct {
		name string
		c    Command
		want error
	}{
		{"ok", Command{Op: OpSet, Key: b("k"), Value: b("v")}, nil},
		{"max key", Command{Op: OpGet, Key: make([]byte, MaxKeySize)}, nil},
		{"max value", Command{Op: OpSet, Value: make([]byte, MaxValueSize)}, nil},
		{"unknown op", Command{Op: opEnd}, ErrMalformed},
		{"zero op", Command{}, ErrMalformed},
		{"nx xx", Command{Op: OpSet, NX: true, XX: true}, ErrSyntax},
		{"flag on get", Command{Op: OpGet, GetOld: true}, ErrSyntax},
		{"expect absent with value", Command{Op: OpCAS, ExpectAbsent: true, Expected: b("x")}, ErrSyntax},
		{"negative limit", Command{Op: OpScan, Limit: -1}, ErrSyntax},
		{"mset unpaired", Command{Op: OpMSet, Keys: bs("a", "b"), Values: bs("1")}, ErrSyntax},
		{"client without seq", Command{Op: OpSet, ID: RequestID{ClientID: 1}}, ErrBadRequestID},
		{"seq without client", Command{Op: OpSet, ID: RequestID{Seq: 1}}, ErrBadRequestID},
		{"key", Command{Op: OpSet, Key: make([]byte, MaxKeySize+1)}, ErrKeyTooLarge},
		{"keys", Command{Op: OpDel, Keys: [][]byte{nil, make([]byte, MaxKeySize+1)}}, ErrKeyTooLarge},
		{"scan prefix", Command{Op: OpScan, Prefix: make([]byte, MaxKeySize+1)}, ErrKeyTooLarge},
		{"too many keys", Command{Op: OpMGet, Keys: make([][]byte, MaxCommandKeys+1)}, ErrTooManyKeys},
		{"value", Command{Op: OpAppend, Value: big}, ErrValueTooLarge},
		{"expected", Command{Op: OpCAS, Expected: big}, ErrValueTooLarge},
		{"mset value", Command{Op: OpMSet, Keys: bs("a"), Values: [][]byte{big}}, ErrValueTooLarge},
		{"command", Command{Op: OpMSet, Keys: bs("a", "b", "c"), Values: [][]byte{big[1:], big[1:], big[1:]}}, ErrCommandTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.c.Validate(); err != tc.want {
				t.Errorf("Validate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOp(t *testing.T) {
	reads := 0
	for o := OpGet; o < opEnd; o++ {
		if !o.Valid() || strings.HasPrefix(o.String(), "Op(") {
			t.Errorf("op %d: Valid = %v, String = %q", o, o.Valid(), o)
		}
		if o.ReadOnly() {
			reads++
		}
	}
	if reads != 6 {
		t.Errorf("%d read-only ops, want 6", reads)
	}
	if Op(0).Valid() || opEnd.Valid() || Op(0).String() != "Op(0)" {
		t.Errorf("invalid ops: Valid = %v/%v, String = %q", Op(0).Valid(), opEnd.Valid(), Op(0))
	}
}

func TestParseInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"-1", -1, true},
		{"10", 10, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"18446744073709551615", 0, false},
		{"18446744073709551616", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"-0", 0, false},
		{"00", 0, false},
		{"01", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1a", 0, false},
		{"1.5", 0, false},
		{"--1", 0, false},
		{"000000000000000000001", 0, false},
	} {
		got, err := ParseInt([]byte(tc.in))
		if tc.ok && (err != nil || got != tc.want) || !tc.ok && err != ErrNotInteger {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	for i, e := range allErrors {
		code := errorCode(e)
		if got, ok := errorByCode(code); !ok || got != e || int(code) != i+1 {
			t.Errorf("error %q: code %d maps back to %v, %v", e, code, got, ok)
		}
		if !strings.HasPrefix(e.Error(), "ERR ") {
			t.Errorf("error %q does not start with ERR", e)
		}
	}
	if _, ok := errorByCode(byte(len(allErrors) + 1)); ok {
		t.Error("an unknown code maps to an error")
	}
}
