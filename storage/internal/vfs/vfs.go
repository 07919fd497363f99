// Package vfs is the small file-system surface the storage packages use, so
// that tests can replace the operating system with a simulated disk that
// loses unsynced writes, tears the last write, or fails on demand (see Mem).
//
// The interface is shaped by what a write-ahead log needs and nothing more:
// append-only files, atomic renames, and explicit durability of both file
// contents (File.Sync) and directory entries (FS.SyncDir).
package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// File is an open file. Reads through ReadAt may run concurrently with each
// other; everything else is used by one goroutine at a time.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync makes the file's contents durable.
	Sync() error
	// Truncate changes the file's size; it does not move the write offset
	// of a file opened for appending (appends always go to the end).
	Truncate(size int64) error
	// Size returns the file's current size.
	Size() (int64, error)
}

// FS is a file system. Names are paths as used by package os.
type FS interface {
	// Create creates name, or truncates it if it exists, open for writing.
	Create(name string) (File, error)
	// OpenAppend opens an existing file for appending.
	OpenAppend(name string) (File, error)
	// Open opens name for reading.
	Open(name string) (File, error)
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// Remove deletes a file.
	Remove(name string) error
	// List returns the sorted names (not paths) of the entries of dir.
	List(dir string) ([]string, error)
	// MkdirAll creates dir and its parents as needed, durably: when it
	// returns, the new directories survive a crash.
	MkdirAll(dir string) error
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock named by a file, which it creates if
	// needed; if someone else holds it, it fails at once with ErrLocked.
	// Closing the result releases the lock.
	Lock(name string) (io.Closer, error)
}

// ErrLocked is returned by Lock when the lock is held elsewhere.
var ErrLocked = errors.New("locked by another process")

// WriteNew creates path atomically: write fills a temporary file, which is
// synced and renamed to path, and then the directory is synced, so after a
// crash path either does not exist or holds everything write wrote. Without
// sync (tests and benchmarks only) the syncs are skipped. WriteNew returns
// the file, still open for appending; the caller closes it.
func WriteNew(fs FS, path string, sync bool, write func(io.Writer) error) (File, error) {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	fail := func(what string, err error) (File, error) {
		// The temporary file is garbage now; removing it is best effort
		// because readers ignore *.tmp names anyway.
		_ = f.Close()
		_ = fs.Remove(tmp)
		return nil, fmt.Errorf("%s %s: %w", what, tmp, err)
	}
	if err := write(f); err != nil {
		return fail("write", err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fail("sync", err)
		}
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fail("rename", err)
	}
	if sync {
		if err := fs.SyncDir(filepath.Dir(path)); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("sync directory of %s: %w", path, err)
		}
	}
	return f, nil
}

// isTemp reports whether name is a leftover of an interrupted WriteNew.
func isTemp(name string) bool { return filepath.Ext(name) == ".tmp" }

// PrepareDir creates dir if needed, removes the leftovers of interrupted
// WriteNew calls (never renamed, so nothing in them was ever relied on),
// and returns the names of the other entries.
func PrepareDir(fs FS, dir string) ([]string, error) {
	if err := fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	kept := names[:0]
	for _, n := range names {
		if !isTemp(n) {
			kept = append(kept, n)
		} else if err := fs.Remove(filepath.Join(dir, n)); err != nil {
			return nil, fmt.Errorf("remove leftover %s: %w", filepath.Join(dir, n), err)
		}
	}
	return kept, nil
}

// OpenSized opens path for reading and returns its size too.
func OpenSized(fs FS, path string) (File, int64, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", path, err)
	}
	size, err := f.Size()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return f, size, nil
}

// OS is the real file system.
type OS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (OS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) OpenAppend(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (OS) Remove(name string) error             { return os.Remove(name) }

func (o OS) MkdirAll(dir string) error {
	// A new directory is an entry in its parent, durable only once the
	// parent is synced; otherwise a crash could take the directory, and
	// every synced file in it, away.
	var created []string // deepest first
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range slices.Backward(created) {
		if err := o.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("sync the parent of new directory %s: %w", d, err)
		}
	}
	return nil
}

func (OS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names, nil
}

func (OS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
