package kv

import (
	"errors"
	"fmt"
)

// Error is a failure reported to the client that sent a command. Its text
// follows Redis conventions ("ERR ..."), so the RESP server can write it
// verbatim after "-".
//
// The set of errors is closed (the Err variables below, compared with == or
// errors.Is): results, errors included, are remembered for exactly-once
// replies and travel in snapshots, where an error is stored as its code.
type Error struct{ text string }

func (e *Error) Error() string { return e.text }

// Errors a Result can carry.
var (
	// ErrNotInteger: INCRBY on a value that is not the decimal form of a
	// signed 64-bit integer (same parsing rules as Redis).
	ErrNotInteger = &Error{"ERR value is not an integer or out of range"}
	// ErrOverflow: INCRBY would leave the int64 range.
	ErrOverflow = &Error{"ERR increment or decrement would overflow"}
	// ErrSyntax: contradictory or misplaced options (SET NX with XX, CAS
	// expecting absence and a value, a negative SCAN limit, MSET keys
	// without values...).
	ErrSyntax = &Error{"ERR syntax error"}
	// ErrKeyTooLarge: a key longer than MaxKeySize.
	ErrKeyTooLarge = &Error{fmt.Sprintf("ERR key exceeds maximum allowed size (%d bytes)", MaxKeySize)}
	// ErrValueTooLarge: a value longer than MaxValueSize, given or produced
	// by APPEND.
	ErrValueTooLarge = &Error{fmt.Sprintf("ERR string exceeds maximum allowed size (%d bytes)", MaxValueSize)}
	// ErrCommandTooLarge: an encoded command longer than MaxCommandSize.
	ErrCommandTooLarge = &Error{fmt.Sprintf("ERR command exceeds maximum allowed size (%d bytes)", MaxCommandSize)}
	// ErrTooManyKeys: more than MaxCommandKeys keys in one command.
	ErrTooManyKeys = &Error{fmt.Sprintf("ERR too many keys in one command (at most %d)", MaxCommandKeys)}
	// ErrBadRequestID: a Seq of 0 with a ClientID, or a Seq without one.
	ErrBadRequestID = &Error{"ERR invalid request id: Seq must be at least 1 when ClientID is set, and 0 otherwise"}
	// ErrRequestTooOld: the client's session already applied a higher Seq;
	// this request was not applied now (it was applied earlier or never).
	ErrRequestTooOld = &Error{"ERR request too old: a newer request from this client was already applied"}
	// ErrSessionExpired: a request with Seq > 1 from a client the store
	// does not remember (evicted from the session table). It was not applied
	// now; an earlier copy may have been applied before the eviction, so its
	// outcome is unknown. The client must continue with a new ClientID.
	ErrSessionExpired = &Error{"ERR session expired: outcome unknown, continue with a new client id"}
	// ErrNotReadOnly: Store.Read was given a write command.
	ErrNotReadOnly = &Error{"ERR not a read-only command"}
	// ErrMalformed: Apply was given bytes that are not a valid command.
	ErrMalformed = &Error{"ERR malformed command"}
	// ErrStaleIndex: Apply was given a log index at or below the applied
	// index; nothing changed.
	ErrStaleIndex = &Error{"ERR log index already applied"}
)

// allErrors lists every Error; its position (plus one, 0 meaning "no
// error") is its code in snapshots, so new errors go at the end.
var allErrors = [...]*Error{
	ErrNotInteger, ErrOverflow, ErrSyntax, ErrKeyTooLarge, ErrValueTooLarge,
	ErrCommandTooLarge, ErrTooManyKeys, ErrBadRequestID, ErrRequestTooOld,
	ErrSessionExpired, ErrNotReadOnly, ErrMalformed, ErrStaleIndex,
}

// errorCode returns the code of e: 0 for nil, else its position plus one.
func errorCode(e *Error) byte {
	for i, x := range allErrors {
		if x == e {
			return byte(i + 1)
		}
	}
	return 0
}

// errorByCode returns the Error stored as code (nil for 0), and whether
// the code is known.
func errorByCode(code byte) (*Error, bool) {
	if code == 0 {
		return nil, true
	}
	if int(code) > len(allErrors) {
		return nil, false
	}
	return allErrors[code-1], true
}

// ErrCorrupt is wrapped by every error about bytes that are not a valid
// command or snapshot encoding.
var ErrCorrupt = errors.New("kv: corrupt encoding")
