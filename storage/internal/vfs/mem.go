package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
)

// Op names an operation that changes a Mem disk, for Mem.SetFail.
type Op string

// The operations a failure hook sees.
const (
	OpCreate   Op = "create"
	OpWrite    Op = "write"
	OpSync     Op = "sync"
	OpTruncate Op = "truncate"
	OpRename   Op = "rename"
	OpRemove   Op = "remove"
	OpSyncDir  Op = "syncdir"
)

// Mem is an in-memory FS that remembers what a real disk would still hold
// after a power failure: a file's contents only up to its last Sync, and
// creations, renames and removals only up to the last SyncDir (they reach the
// disk in order, like a journal). Crash returns such a disk. It is safe for
// concurrent use.
type Mem struct {
	// mu guards everything below.
	mu    sync.Mutex
	files map[string]*inode // the names a running program sees
	dirs  map[string]bool
	// durable holds the names as of the last SyncDir; pending the changes
	// made since, in order.
	durable map[string]*inode
	pending []dirOp
	fail    func(op Op, name string) error
	locks   map[string]bool // held locks; they do not survive a crash
}

type inode struct {
	data []byte
	// synced is the content as of the last Sync. It may alias data's
	// backing array: data only grows by appending past len(synced), and
	// Truncate copies.
	synced []byte
	// appendOnly is true while data still starts with synced.
	appendOnly bool
}

type dirOp struct {
	op       Op
	name, to string
	ino      *inode
}

// NewMem returns an empty disk.
func NewMem() *Mem {
	return &Mem{files: map[string]*inode{}, dirs: map[string]bool{}, durable: map[string]*inode{}, locks: map[string]bool{}}
}

// SetFail installs a hook called before every operation that changes the
// disk (outside Mem's lock, so it may block). A non-nil error fails the
// operation; a failed write still stores the first half of its bytes, as a
// short write would.
func (m *Mem) SetFail(hook func(op Op, name string) error) {
	m.mu.Lock()
	m.fail = hook
	m.mu.Unlock()
}

func (m *Mem) check(op Op, name string) error {
	m.mu.Lock()
	hook := m.fail
	m.mu.Unlock()
	if hook == nil {
		return nil
	}
	if err := hook(op, name); err != nil {
		return &fs.PathError{Op: string(op), Path: name, Err: err}
	}
	return nil
}

// Crash returns the disk as a power failure now could leave it. With a nil
// rng every unsynced change is lost. Otherwise a random prefix of the
// unsynced directory changes survives, and each file keeps a random part of
// its unsynced appended bytes, possibly followed by zeros (the size reached
// the disk but the data did not).
func (m *Mem) Crash(rng *rand.Rand) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make(map[string]*inode, len(m.durable))
	for n, ino := range m.durable {
		names[n] = ino
	}
	k := 0
	if rng != nil {
		k = rng.IntN(len(m.pending) + 1)
	}
	for _, op := range m.pending[:k] {
		op.apply(names)
	}
	out := NewMem()
	for d := range m.dirs {
		out.dirs[d] = true
	}
	seen := map[*inode]*inode{}
	for n, ino := range names {
		c, ok := seen[ino]
		if !ok {
			data := ino.afterCrash(rng)
			c = &inode{data: data, synced: data[:len(data):len(data)], appendOnly: true}
			seen[ino] = c
		}
		out.files[n] = c
		out.durable[n] = c
	}
	return out
}

func (ino *inode) afterCrash(rng *rand.Rand) []byte {
	if rng == nil {
		return bytes.Clone(ino.synced)
	}
	if !ino.appendOnly {
		if rng.IntN(2) == 0 {
			return bytes.Clone(ino.synced)
		}
		return bytes.Clone(ino.data)
	}
	extra := ino.data[len(ino.synced):]
	kept := rng.IntN(len(extra) + 1)
	zeros := 0
	if rng.IntN(2) == 0 {
		zeros = rng.IntN(len(extra) - kept + 1)
	}
	out := make([]byte, len(ino.synced)+kept+zeros)
	copy(out, ino.data[:len(ino.synced)+kept])
	return out
}

func (op dirOp) apply(names map[string]*inode) {
	switch op.op {
	case OpCreate:
		names[op.name] = op.ino
	case OpRename:
		if ino, ok := names[op.name]; ok {
			delete(names, op.name)
			names[op.to] = ino
		}
	case OpRemove:
		delete(names, op.name)
	}
}

// change applies a namespace change now and records it as pending.
func (m *Mem) changeLocked(op dirOp) {
	op.apply(m.files)
	m.pending = append(m.pending, op)
}

// ReadFile returns a copy of a file's current content.
func (m *Mem) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[name]
	if !ok {
		return nil, notExist("open", name)
	}
	return bytes.Clone(ino.data), nil
}

// WriteFile replaces (or creates) a file durably, bypassing the failure
// hook: tests use it to damage a disk on purpose.
func (m *Mem) WriteFile(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data = bytes.Clone(data)
	ino := &inode{data: data, synced: data[:len(data):len(data)], appendOnly: true}
	m.files[name] = ino
	m.durable[name] = ino
}

// RemoveFile deletes a file durably, bypassing the failure hook.
func (m *Mem) RemoveFile(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, name)
	delete(m.durable, name)
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (m *Mem) Create(name string) (File, error) {
	if err := m.check(OpCreate, name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[filepath.Dir(name)] {
		return nil, notExist("create", name)
	}
	ino, ok := m.files[name]
	if ok {
		ino.data = nil
		ino.appendOnly = false
	} else {
		ino = &inode{appendOnly: true}
		m.changeLocked(dirOp{op: OpCreate, name: name, ino: ino})
	}
	return &memFile{m: m, ino: ino, name: name, writable: true}, nil
}

func (m *Mem) open(name string, writable bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.files[name]
	if !ok {
		return nil, notExist("open", name)
	}
	return &memFile{m: m, ino: ino, name: name, writable: writable}, nil
}

func (m *Mem) OpenAppend(name string) (File, error) { return m.open(name, true) }
func (m *Mem) Open(name string) (File, error)       { return m.open(name, false) }

func (m *Mem) Rename(oldname, newname string) error {
	if err := m.check(OpRename, oldname); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[oldname]; !ok {
		return notExist("rename", oldname)
	}
	m.changeLocked(dirOp{op: OpRename, name: oldname, to: newname})
	return nil
}

func (m *Mem) Remove(name string) error {
	if err := m.check(OpRemove, name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; !ok {
		return notExist("remove", name)
	}
	m.changeLocked(dirOp{op: OpRemove, name: name})
	return nil
}

func (m *Mem) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[dir] {
		return nil, notExist("open", dir)
	}
	var names []string
	for n := range m.files {
		if filepath.Dir(n) == dir {
			names = append(names, filepath.Base(n))
		}
	}
	for d := range m.dirs {
		if d != dir && filepath.Dir(d) == dir {
			names = append(names, filepath.Base(d))
		}
	}
	slices.Sort(names)
	return names, nil
}

// MkdirAll creates directories durably at once, as the FS interface
// promises.
func (m *Mem) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); !m.dirs[d]; d = filepath.Dir(d) {
		m.dirs[d] = true
	}
	return nil
}

// SyncDir makes every pending namespace change durable, as a journal commit
// would, whatever directory it was in.
func (m *Mem) SyncDir(dir string) error {
	if err := m.check(OpSyncDir, dir); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[dir] {
		return notExist("open", dir)
	}
	for _, op := range m.pending {
		op.apply(m.durable)
	}
	m.pending = nil
	return nil
}

func (m *Mem) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[filepath.Dir(name)] {
		return nil, notExist("lock", name)
	}
	if m.locks[name] {
		return nil, ErrLocked
	}
	m.locks[name] = true
	return &memLock{m: m, name: name}, nil
}

type memLock struct {
	m    *Mem
	name string
	once sync.Once
}

func (l *memLock) Close() error {
	l.once.Do(func() {
		l.m.mu.Lock()
		delete(l.m.locks, l.name)
		l.m.mu.Unlock()
	})
	return nil
}

type memFile struct {
	m        *Mem
	ino      *inode
	name     string
	writable bool
	// off is the position of Read; only one goroutine reads sequentially.
	off    int64
	closed bool
}

var errClosed = errors.New("file already closed")

func (f *memFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errClosed}
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	if !f.writable {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
	}
	err := f.m.check(OpWrite, f.name)
	if err != nil {
		p = p[:len(p)/2]
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: errClosed}
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), err
}

func (f *memFile) Sync() error {
	if err := f.m.check(OpSync, f.name); err != nil {
		return err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	d := f.ino.data
	f.ino.synced = d[:len(d):len(d)]
	f.ino.appendOnly = true
	return nil
}

func (f *memFile) Truncate(size int64) error {
	if !f.writable {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: fs.ErrPermission}
	}
	if err := f.m.check(OpTruncate, f.name); err != nil {
		return err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	data := make([]byte, size)
	copy(data, f.ino.data)
	f.ino.data = data
	if int(size) < len(f.ino.synced) {
		f.ino.appendOnly = false
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: errClosed}
	}
	f.closed = true
	return nil
}
