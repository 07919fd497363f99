package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Limits. Redis allows keys and values of 512 MiB; a replicated store ships
// every write through the log, to every replica and into snapshots, so we
// choose much smaller bounds that still cover ordinary use. They are checked
// when a command is validated or decoded and again when it is applied, and
// they are part of the replicated state machine's definition: every replica
// must use the same values.
const (
	// MaxKeySize is the longest key, in bytes (64 KiB).
	MaxKeySize = 64 << 10
	// MaxValueSize is the longest value, in bytes (8 MiB), whether given by
	// SET, MSET or CAS or produced by APPEND.
	MaxValueSize = 8 << 20
	// MaxCommandSize bounds an encoded command (16 MiB): an MSET may carry
	// several large values, but one log entry stays bounded. Transports and
	// logs must accept entries of this size plus their own framing.
	MaxCommandSize = 16 << 20
	// MaxCommandKeys bounds the keys of one DEL, EXISTS, MGET or MSET, so
	// that a small command cannot make the decoder allocate a huge table.
	MaxCommandKeys = 1 << 16
	// DefaultScanLimit is the page size of a SCAN whose Limit is 0, as for
	// Redis' COUNT.
	DefaultScanLimit = 10
	// MaxScanLimit caps a SCAN page; larger limits are silently lowered, as
	// Redis treats COUNT as a hint.
	MaxScanLimit = 1000
	// MaxScanBytes stops a SCAN page early once its keys add up to this
	// many bytes (1 MiB), so that a page of long keys stays small. A page
	// always holds at least one key when any is left.
	MaxScanBytes = 1 << 20
)

// Op names a command.
type Op uint8

// The commands. Reads (Get, Exists, MGet, StrLen, Scan, Count) are served
// by Store.Read without going through the log; writes go through Apply.
const (
	OpGet    Op = iota + 1 // Key -> Value
	OpSet                  // Key, Value, NX|XX, GetOld -> Int (1 written, 0 not), Value (old, with GetOld)
	OpDel                  // Keys -> Int (keys deleted)
	OpExists               // Keys -> Int (keys present, repeats counted)
	OpAppend               // Key, Value -> Int (new length)
	OpIncrBy               // Key, Delta -> Int (new value)
	OpCAS                  // Key, Expected or ExpectAbsent, Value -> Int (1 swapped, 0 not)
	OpMSet                 // Keys, Values -> nothing (success)
	OpMGet                 // Keys -> Values
	OpStrLen               // Key -> Int (0 when missing)
	OpScan                 // Key (start), Prefix, Limit -> Keys, Cursor
	OpCount                // -> Int (number of keys, DBSIZE)
	opEnd                  // sentinel for validation; keep last
)

var opNames = [...]string{
	OpGet:    "get",
	OpSet:    "set",
	OpDel:    "del",
	OpExists: "exists",
	OpAppend: "append",
	OpIncrBy: "incrby",
	OpCAS:    "cas",
	OpMSet:   "mset",
	OpMGet:   "mget",
	OpStrLen: "strlen",
	OpScan:   "scan",
	OpCount:  "dbsize",
}

// String returns the Redis command name, lower case (suits metric labels).
func (o Op) String() string {
	if o.Valid() {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Valid reports whether o is one of the defined commands.
func (o Op) Valid() bool { return o > 0 && o < opEnd }

// ReadOnly reports whether o never changes the store.
func (o Op) ReadOnly() bool {
	switch o {
	case OpGet, OpExists, OpMGet, OpStrLen, OpScan, OpCount:
		return true
	}
	return false
}

// RequestID identifies a write for exactly-once application. ClientID
// names a session, Seq numbers its requests. The protocol a client must
// follow:
//
//   - ClientID is unique across the cluster's life (random 64 bits, say);
//     0 means "no session": the command is applied every time it is seen.
//   - The first request of a session has Seq 1; each later one a larger Seq.
//   - At most one request per ClientID is outstanding: move to the next Seq
//     only once the current one has a result (or is abandoned for good).
//   - A retry re-sends the same bytes with the same RequestID.
//
// A retry of the last applied Seq gets the original result again; an older
// Seq gets ErrRequestTooOld; a Seq above 1 from a session the store has
// forgotten gets ErrSessionExpired (see MaxSessions for the bound).
type RequestID struct {
	ClientID uint64
	Seq      uint64
}

// Command is one decoded command. Which fields matter depends on Op (see
// the Op constants); the others are ignored by the encoding and must be
// zero for a decoded command to compare equal to the original.
//
// Byte slices of a Command returned by UnmarshalCommand alias the encoded
// input; the Store copies whatever it keeps.
type Command struct {
	Op Op
	// ID is the request id of a write; reads ignore it.
	ID RequestID

	// Key is the key of single-key commands, and for Scan the key to start
	// from (inclusive; empty = the beginning).
	Key []byte
	// Value is the value of Set and Append, and the new value of CAS.
	Value []byte
	// Expected is the value CAS compares the current one with.
	Expected []byte
	// Keys are the keys of Del, Exists, MGet and MSet.
	Keys [][]byte
	// Values are MSet's values, one per key.
	Values [][]byte
	// Delta is IncrBy's increment (negative to decrement).
	Delta int64
	// Prefix restricts Scan to keys that start with it.
	Prefix []byte
	// Limit is the most keys a Scan returns: 0 means DefaultScanLimit,
	// above MaxScanLimit means MaxScanLimit.
	Limit int

	// Set options, as in Redis: NX writes only if the key is missing, XX
	// only if present, GetOld also returns the previous value.
	NX, XX, GetOld bool
	// ExpectAbsent makes CAS swap only when the key is missing (Expected
	// must then be empty). Without it, a missing key never matches, not
	// even an empty Expected: that is what `CAS key expected new` means.
	ExpectAbsent bool
}

// flag bits of the encoding.
const (
	flagNX byte = 1 << iota
	flagXX
	flagGetOld
	flagExpectAbsent
)

func (c *Command) flags() byte {
	var f byte
	if c.NX {
		f |= flagNX
	}
	if c.XX {
		f |= flagXX
	}
	if c.GetOld {
		f |= flagGetOld
	}
	if c.ExpectAbsent {
		f |= flagExpectAbsent
	}
	return f
}

func (c *Command) setFlags(f byte) {
	c.NX = f&flagNX != 0
	c.XX = f&flagXX != 0
	c.GetOld = f&flagGetOld != 0
	c.ExpectAbsent = f&flagExpectAbsent != 0
}

// allowedFlags lists the options each command accepts.
func (o Op) allowedFlags() byte {
	switch o {
	case OpSet:
		return flagNX | flagXX | flagGetOld
	case OpCAS:
		return flagExpectAbsent
	}
	return 0
}

// Validate checks c against the limits and its options against each other.
// It returns nil or one of the Err values, so that a server can refuse a
// command with the same error Apply would give, before proposing it.
func (c *Command) Validate() error {
	switch {
	case !c.Op.Valid():
		return ErrMalformed
	case c.flags()&^c.Op.allowedFlags() != 0, c.NX && c.XX,
		c.ExpectAbsent && len(c.Expected) > 0,
		c.Limit < 0 || c.Limit > math.MaxInt32,
		c.Op == OpMSet && len(c.Keys) != len(c.Values):
		return ErrSyntax
	case (c.ID.ClientID == 0) != (c.ID.Seq == 0):
		return ErrBadRequestID
	}
	switch c.Op {
	case OpDel, OpExists, OpMGet, OpMSet:
		if len(c.Keys) > MaxCommandKeys {
			return ErrTooManyKeys
		}
		for _, k := range c.Keys {
			if len(k) > MaxKeySize {
				return ErrKeyTooLarge
			}
		}
	case OpScan:
		if len(c.Key) > MaxKeySize || len(c.Prefix) > MaxKeySize {
			return ErrKeyTooLarge
		}
	case OpCount:
	default:
		if len(c.Key) > MaxKeySize {
			return ErrKeyTooLarge
		}
	}
	for _, v := range c.Values {
		if len(v) > MaxValueSize {
			return ErrValueTooLarge
		}
	}
	if len(c.Value) > MaxValueSize || len(c.Expected) > MaxValueSize {
		return ErrValueTooLarge
	}
	if c.Size() > MaxCommandSize {
		return ErrCommandTooLarge
	}
	return nil
}

// The encoding: a version byte, the op, a flags byte, the request id as two
// uvarints, then the op's fields in a fixed order. Byte strings are a
// uvarint length and the bytes; lists are a uvarint count and their
// elements; Delta is a zig-zag varint. It is hand-written so that encoding
// a command allocates only its output and decoding allocates only the key
// list of multi-key commands.
const commandVersion byte = 1

// Size returns the length of c's encoding, without encoding it.
func (c *Command) Size() int {
	n := 3 + uvarintLen(c.ID.ClientID) + uvarintLen(c.ID.Seq)
	str := func(p []byte) int { return uvarintLen(uint64(len(p))) + len(p) }
	switch c.Op {
	case OpGet, OpStrLen:
		n += str(c.Key)
	case OpSet, OpAppend:
		n += str(c.Key) + str(c.Value)
	case OpIncrBy:
		n += str(c.Key) + uvarintLen(zigzag(c.Delta))
	case OpCAS:
		n += str(c.Key) + str(c.Expected) + str(c.Value)
	case OpDel, OpExists, OpMGet, OpMSet:
		n += uvarintLen(uint64(len(c.Keys)))
		for i, k := range c.Keys {
			n += str(k)
			if c.Op == OpMSet && i < len(c.Values) {
				n += str(c.Values[i])
			}
		}
	case OpScan:
		n += str(c.Key) + str(c.Prefix) + uvarintLen(uint64(c.Limit))
	}
	return n
}

// MarshalAppend appends the encoding of c to b. It does not validate c:
// call Validate first for commands built from client input. It panics
// only if an MSet has fewer Values than Keys, which Validate refuses.
func (c *Command) MarshalAppend(b []byte) []byte {
	b = append(b, commandVersion, byte(c.Op), c.flags())
	b = binary.AppendUvarint(b, c.ID.ClientID)
	b = binary.AppendUvarint(b, c.ID.Seq)
	switch c.Op {
	case OpGet, OpStrLen:
		b = appendBytes(b, c.Key)
	case OpSet, OpAppend:
		b = appendBytes(b, c.Key)
		b = appendBytes(b, c.Value)
	case OpIncrBy:
		b = appendBytes(b, c.Key)
		b = binary.AppendVarint(b, c.Delta)
	case OpCAS:
		b = appendBytes(b, c.Key)
		b = appendBytes(b, c.Expected)
		b = appendBytes(b, c.Value)
	case OpDel, OpExists, OpMGet:
		b = binary.AppendUvarint(b, uint64(len(c.Keys)))
		for _, k := range c.Keys {
			b = appendBytes(b, k)
		}
	case OpMSet:
		b = binary.AppendUvarint(b, uint64(len(c.Keys)))
		for i, k := range c.Keys {
			b = appendBytes(b, k)
			b = appendBytes(b, c.Values[i])
		}
	case OpScan:
		b = appendBytes(b, c.Key)
		b = appendBytes(b, c.Prefix)
		b = binary.AppendUvarint(b, uint64(c.Limit))
	}
	return b
}

// Marshal returns the encoding of c (see MarshalAppend).
func (c *Command) Marshal() []byte { return c.MarshalAppend(make([]byte, 0, c.Size())) }

// UnmarshalCommand decodes a command written by MarshalAppend and
// validates it. The input is treated as hostile: sizes are checked before
// anything is allocated. Errors wrap ErrCorrupt for a malformed encoding,
// or one of the Err values (ErrKeyTooLarge...) for a well-formed command
// that Validate refuses. The result aliases b.
func UnmarshalCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommandSize {
		return c, fmt.Errorf("kv: decode command of %d bytes: %w", len(b), ErrCommandTooLarge)
	}
	d := decoder{buf: b}
	c.ID = d.header(&c)
	switch c.Op {
	case OpGet, OpStrLen:
		c.Key = d.bytes()
	case OpSet, OpAppend:
		c.Key = d.bytes()
		c.Value = d.bytes()
	case OpIncrBy:
		c.Key = d.bytes()
		c.Delta = d.varint()
	case OpCAS:
		c.Key = d.bytes()
		c.Expected = d.bytes()
		c.Value = d.bytes()
	case OpDel, OpExists, OpMGet:
		c.Keys = d.list(1)
		for i := range c.Keys {
			c.Keys[i] = d.bytes()
		}
	case OpMSet:
		c.Keys = d.list(2)
		if d.err == nil && c.Keys != nil {
			c.Values = make([][]byte, len(c.Keys))
		}
		for i := range c.Keys {
			c.Keys[i] = d.bytes()
			c.Values[i] = d.bytes()
		}
	case OpScan:
		c.Key = d.bytes()
		c.Prefix = d.bytes()
		if l := d.uvarint(); l > math.MaxInt32 {
			d.fail("scan limit %d out of range", l)
		} else {
			c.Limit = int(l)
		}
	}
	if err := d.finish(); err != nil {
		return Command{}, err
	}
	if err := c.Validate(); err != nil {
		return Command{}, fmt.Errorf("kv: decode %v command: %w", c.Op, err)
	}
	return c, nil
}

// PeekRequestID returns the request id of an encoded command without
// decoding the rest, so a runtime can match an applied entry to the caller
// waiting for it.
func PeekRequestID(b []byte) (RequestID, error) {
	d := decoder{buf: b}
	var c Command
	id := d.header(&c)
	return id, d.err
}

// asError turns a decoding error into the Error a Result reports.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrMalformed
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// zigzag maps signed to unsigned integers as binary.AppendVarint does, so
// that small magnitudes of either sign encode short.
func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

func unzigzag(x uint64) int64 { return int64(x>>1) ^ -int64(x&1) }

// decoder reads a command from a byte slice, remembering the first error.
type decoder struct {
	buf []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: decode command at byte %d: %s", ErrCorrupt, d.off, fmt.Sprintf(format, args...))
	}
}

// header reads the version, op, flags and request id into c.
func (d *decoder) header(c *Command) RequestID {
	if len(d.buf) < 3 {
		d.fail("%d bytes is shorter than a header", len(d.buf))
		return RequestID{}
	}
	if v := d.buf[0]; v != commandVersion {
		d.fail("unsupported version %d", v)
		return RequestID{}
	}
	c.Op = Op(d.buf[1])
	if !c.Op.Valid() {
		d.fail("unknown op %d", d.buf[1])
		return RequestID{}
	}
	f := d.buf[2]
	if f&^c.Op.allowedFlags() != 0 {
		d.fail("flags %#x not allowed for %v", f, c.Op)
		return RequestID{}
	}
	c.setFlags(f)
	d.off = 3
	return RequestID{ClientID: d.uvarint(), Seq: d.uvarint()}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// varint reads a zig-zag varint, as binary.AppendVarint writes it.
func (d *decoder) varint() int64 { return unzigzag(d.uvarint()) }

// bytes returns a length-prefixed byte string aliasing the input (nil when
// empty), capped so that appending to it cannot write into the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)-d.off) {
		d.fail("length %d exceeds the %d bytes left", n, len(d.buf)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	end := d.off + int(n)
	p := d.buf[d.off:end:end]
	d.off = end
	return p
}

// list reads a count of elements that take at least minSize bytes each,
// checks it against the bytes left and MaxCommandKeys, and returns a slice
// of that length (nil when empty).
func (d *decoder) list(minSize int) [][]byte {
	n := d.uvarint()
	switch {
	case d.err != nil || n == 0:
		return nil
	case n > MaxCommandKeys:
		d.err = fmt.Errorf("kv: decode command with %d keys: %w", n, ErrTooManyKeys)
		return nil
	case n > uint64((len(d.buf)-d.off)/minSize):
		d.fail("count %d cannot fit in the %d bytes left", n, len(d.buf)-d.off)
		return nil
	}
	return make([][]byte, n)
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
	return d.err
}
