package kv

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"testing"
)

// FuzzUnmarshalCommand feeds hostile bytes to the decoder and to Apply:
// neither may panic, whatever decodes must re-encode to an equal command,
// and Apply must report the decoder's verdict.
func FuzzUnmarshalCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		f.Add(c.Marshal())
	}
	f.Add([]byte{})
	f.Add([]byte{commandVersion, byte(OpMGet), 0, 0, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := UnmarshalCommand(data)
		s := New()
		r := s.Apply(1, data)
		switch {
		case len(data) == 0:
			if r.Err != nil {
				t.Fatalf("empty entry: %v", r.Err)
			}
			return
		case err != nil:
			if r.Err != asError(err) {
				t.Fatalf("Apply error %v, decoder said %v", r.Err, err)
			}
			return
		}
		if r.Err == ErrMalformed {
			t.Fatalf("Apply refused what the decoder accepted: %+v", c)
		}
		if id, err := PeekRequestID(data); err != nil || id != c.ID {
			t.Fatalf("PeekRequestID = %v, %v; want %v", id, err, c.ID)
		}
		enc := c.Marshal()
		if len(enc) != c.Size() || len(enc) > len(data) {
			t.Fatalf("re-encoding has %d bytes, Size %d, input %d", len(enc), c.Size(), len(data))
		}
		c2, err := UnmarshalCommand(enc)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decoding: %v\ngot  %+v\nwant %+v", err, c2, c)
		}
	})
}

// FuzzRestore feeds hostile bytes to Restore, as they come and with a
// valid checksum appended so that the parser behind the checksum is
// explored too. Restore may not panic, must leave the store as it was when
// it refuses, and whatever it accepts must snapshot and restore again to
// the same bytes.
func FuzzRestore(f *testing.F) {
	snap := snapshotBytes(f, richStore(f, 30))
	f.Add(snap)
	f.Add(snap[:len(snap)-4])
	f.Add(snapshotBytes(f, New()))
	f.Fuzz(func(t *testing.T, data []byte) {
		sealed := binary.BigEndian.AppendUint32(bytes.Clone(data), crc32.Checksum(data, castagnoli))
		for _, in := range [][]byte{data, sealed} {
			s := New()
			applyNext(t, s, Command{Op: OpSet, Key: b("before"), Value: b("restore")})
			before := snapshotBytes(t, s)
			if err := s.Restore(bytes.NewReader(in)); err != nil {
				if got := snapshotBytes(t, s); !bytes.Equal(got, before) {
					t.Fatalf("refused Restore (%v) changed the store", err)
				}
				continue
			}
			again := snapshotBytes(t, s)
			if got := snapshotBytes(t, restored(t, again)); !bytes.Equal(got, again) {
				t.Fatal("snapshot of a restored snapshot differs")
			}
		}
	})
}
