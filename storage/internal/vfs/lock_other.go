//go:build !unix

package vfs

import (
	"io"
	"os"
)

// Lock only creates the file where advisory locks are not available: two
// processes sharing a directory are then not prevented.
func (OS) Lock(name string) (io.Closer, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
}
