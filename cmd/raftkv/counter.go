package main

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/node"
)

// counter is a stand-in state machine until the key-value store is wired
// in: it counts the commands applied.
type counter struct{ n uint64 }

var _ node.StateMachine = (*counter)(nil)

func (c *counter) Apply(index uint64, data []byte) any {
	c.n++
	return c.n
}

func (c *counter) Snapshot(w io.Writer) error {
	_, err := w.Write(binary.BigEndian.AppendUint64(nil, c.n))
	return err
}

func (c *counter) Restore(r io.Reader) error {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("restore counter: %w", err)
	}
	c.n = binary.BigEndian.Uint64(b[:])
	return nil
}
