package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Queries are the node's requests to other nodes outside raft, carried by
// transport.Query: a founder's hello while the founders agree on the
// cluster id (found.go), and a follower asking the leader for its client
// URL, so that its server can redirect a request only the leader serves.
//
// Every request starts with its kind; then
//
//	hello:      version 1 | founding hash u64 | nonce u64 | name (u8 length, bytes)
//	client URL: cluster id u64
//
// and the answers are
//
//	hello:      state (1 founding, 2 founded) | nonce u64 | cluster id u64 |
//	            count u8 | count × (name (u8 length, bytes) | nonce u64)
//	client URL: the URL's bytes
//
// with integers big-endian. A refusal is the transport's, with a reason.
const (
	queryHello     byte = 1
	queryClientURL byte = 2

	helloVersion byte = 1

	helloFounding byte = 1
	helloFounded  byte = 2

	// maxFounders bounds the founders of a cluster, which a hello answer
	// lists with a one-byte count: a cluster is founded by a handful of
	// nodes and grows by joining.
	maxFounders = 255
	// maxURLLen bounds a client URL.
	maxURLLen = 1024
)

var errCutShort = errors.New("cut short")

// hello is a founder's request: who it is, which founders it was started
// with, and what it drew.
type hello struct {
	hash  uint64 // foundingHash of the founders it was given
	nonce uint64
	name  string
}

func (h hello) marshal() []byte {
	b := []byte{queryHello, helloVersion}
	b = binary.BigEndian.AppendUint64(b, h.hash)
	b = binary.BigEndian.AppendUint64(b, h.nonce)
	return appendShortString(b, h.name)
}

// unmarshalHello decodes a hello request, kind byte included.
func unmarshalHello(b []byte) (hello, error) {
	r := reader{b: b}
	if k := r.byte(); k != queryHello {
		return hello{}, fmt.Errorf("not a hello (kind %d)", k)
	}
	if v := r.byte(); r.err == nil && v != helloVersion {
		return hello{}, fmt.Errorf("hello version %d, want %d", v, helloVersion)
	}
	h := hello{hash: r.uint64(), nonce: r.uint64(), name: r.shortString()}
	return h, r.end()
}

// helloAnswer is a founder's answer to a hello: what it drew and, once
// founded, the cluster id and every founder's nonce.
type helloAnswer struct {
	founded   bool
	nonce     uint64
	clusterID uint64
	nonces    map[string]uint64 // founded only
}

func (a helloAnswer) marshal() []byte {
	state := helloFounding
	if a.founded {
		state = helloFounded
	}
	b := []byte{state}
	b = binary.BigEndian.AppendUint64(b, a.nonce)
	b = binary.BigEndian.AppendUint64(b, a.clusterID)
	names := make([]string, 0, len(a.nonces))
	for name := range a.nonces {
		names = append(names, name)
	}
	slices.Sort(names)
	b = append(b, byte(len(names)))
	for _, name := range names {
		b = appendShortString(b, name)
		b = binary.BigEndian.AppendUint64(b, a.nonces[name])
	}
	return b
}

func unmarshalHelloAnswer(b []byte) (helloAnswer, error) {
	r := reader{b: b}
	var a helloAnswer
	switch state := r.byte(); {
	case r.err != nil:
	case state == helloFounded:
		a.founded = true
	case state != helloFounding:
		return helloAnswer{}, fmt.Errorf("unknown founding state %d", state)
	}
	a.nonce, a.clusterID = r.uint64(), r.uint64()
	n := int(r.byte())
	if n > 0 {
		a.nonces = make(map[string]uint64, n)
	}
	for range n {
		name, nonce := r.shortString(), r.uint64()
		if r.err != nil {
			break
		}
		if _, dup := a.nonces[name]; dup {
			return helloAnswer{}, fmt.Errorf("founder %q listed twice", name)
		}
		a.nonces[name] = nonce
	}
	if err := r.end(); err != nil {
		return helloAnswer{}, err
	}
	if a.founded && (a.clusterID == 0 || len(a.nonces) == 0) {
		return helloAnswer{}, errors.New("founded without a cluster id or founders")
	}
	return a, nil
}

func clientURLRequest(clusterID uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{queryClientURL}, clusterID)
}

func appendShortString(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// reader decodes what a peer sent; the first problem sticks in err and
// makes every later read return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errCutShort
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) byte() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) shortString() string {
	n := int(r.byte())
	return string(r.take(n))
}

// uvarint reads a length or count, refusing one above max.
func (r *reader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n <= 0:
		r.err = errCutShort
		return 0
	case v > max:
		r.err = fmt.Errorf("length %d exceeds the limit of %d", v, max)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// end reports the first problem, or bytes left over.
func (r *reader) end() error {
	if r.err == nil && len(r.b) > 0 {
		return fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return r.err
}
