package kv

// Value is the answer to a lookup: Found is false for a missing key (the
// Redis nil reply), and Data is then empty.
type Value struct {
	Data  []byte
	Found bool
}

// Result is what a command returns. Which fields are set depends on the
// command (see the Op constants); a failed command sets only Err.
//
// Slices in a Result are shared with the store and with remembered
// results: callers must not modify them. They stay valid (the store never
// changes bytes it has handed out).
//
// Results have no wire encoding of their own: every replica applies every
// entry, so the node that proposed a write learns its result from its own
// store, in-process. (Remembered results are encoded inside snapshots.)
type Result struct {
	// Err is nil or one of the Err values of this package.
	Err error
	// Value is the value of Get, and the previous value of a Set with
	// GetOld.
	Value Value
	// Int is the integer reply: counts (Del, Exists, Count), lengths
	// (Append, StrLen), the new value of IncrBy, and 1 or 0 for whether
	// Set wrote and CAS swapped.
	Int int64
	// Values answers MGet, one per key in order.
	Values []Value
	// Keys are the keys of a Scan page, in ascending byte order.
	Keys [][]byte
	// Cursor is where the next Scan page starts (pass it as Key with the
	// same Prefix); empty when the scan is complete. It is never empty
	// otherwise, since it sorts after a returned key.
	Cursor []byte
}
