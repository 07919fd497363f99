package node

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/storage/snap"
	"github.com/raftkv/raftkv/transport"
)

// A snapshot's data, as the node writes it and reads it back, is the node's
// own section followed by the state machine's image:
//
//	uvarint n | n bytes: the node section | the StateMachine's image, to the end
//
// The node section holds what the node itself needs to resume from the
// snapshot, beside the state machine; nodeSection and restoreNodeSection
// write and read it. Snapshot data is streamed from and to its file, never
// held whole in memory.

// maxNodeSection bounds the node section a snapshot may announce, so that a
// damaged length cannot make a restore allocate without bound.
const maxNodeSection = 16 << 20

// snapStore is the part of the storage that holds snapshot files.
type snapStore interface {
	// CreateSnapshot starts streaming a snapshot's data to a new file,
	// which SaveSnapshot adopts once it is staged.
	CreateSnapshot(m raftpb.SnapshotMetadata) (*storage.SnapshotWriter, error)
	// OpenSnapshot opens a snapshot's data for reading, verifying it as
	// it is read.
	OpenSnapshot(index, term uint64) (*snap.Reader, error)
}

// nodeSection returns the node's section of a snapshot of the state the
// apply goroutine has applied (a): the member directory, which names the
// members of the snapshot's configuration. It runs on the apply goroutine.
func (n *Node) nodeSection(a *applier) []byte { return a.dir.marshal() }

// restoreNodeSection takes the node section of a snapshot being installed,
// before the state machine's image is restored. It runs on the apply
// goroutine, or in start before that goroutine runs.
func (n *Node) restoreNodeSection(a *applier, section []byte) error {
	d, err := unmarshalDirectory(section)
	if err != nil {
		return err
	}
	a.dir = d
	return nil
}

// writeSnapshotData writes a snapshot's data to w: the node section, then
// the state machine's image.
func writeSnapshotData(w io.Writer, section []byte, image io.WriterTo) error {
	head := binary.AppendUvarint(nil, uint64(len(section)))
	if _, err := w.Write(append(head, section...)); err != nil {
		return err
	}
	_, err := image.WriteTo(w)
	return err
}

// snapJob is a snapshot for the writer goroutine to write: a view of the
// state machine, and the node section and metadata of the same moment.
type snapJob struct {
	md      raftpb.SnapshotMetadata
	section []byte
	image   io.WriterTo
}

// maybeSnapshot takes a snapshot once SnapshotEntries entries were applied
// since the last one. On the apply goroutine it only takes the state
// machine's view, which is cheap; the writer goroutine writes it to a file,
// saves it and compacts the log, while applying goes on. At most one
// snapshot is written at a time: while one is, the next waits for the next
// batch of entries. A failure is logged and retried after SnapshotEntries
// more: the log keeps growing, but nothing is lost.
func (n *Node) maybeSnapshot(a *applier) {
	if a.applied-a.snapIndex < n.cfg.SnapshotEntries || n.snapBusy.Load() {
		return
	}
	a.snapIndex = a.applied
	image, err := n.cfg.StateMachine.Snapshot()
	if err != nil {
		n.stats.snapshotFailures.Add(1)
		n.log.Error("snapshot the state machine", "index", a.applied, "err", err)
		return
	}
	n.snapBusy.Store(true)
	// Never blocks: the writer empties snapc before it clears snapBusy.
	n.snapc <- snapJob{
		md:      raftpb.SnapshotMetadata{Index: a.applied, Term: a.appliedTerm, ConfState: a.conf},
		section: n.nodeSection(a),
		image:   image,
	}
}

// runSnapshots is the writer goroutine: it writes the snapshots the apply
// goroutine hands it, one at a time, until Close (abortc), which also cuts
// short a write in progress.
func (n *Node) runSnapshots() {
	defer close(n.snapDone)
	for {
		select {
		case job := <-n.snapc:
			n.writeSnapshot(job)
			n.snapBusy.Store(false)
		case <-n.abortc:
			return
		}
	}
}

// errAborted cuts short a snapshot being written when the node closes.
var errAborted = errors.New("node closing")

func (n *Node) writeSnapshot(job snapJob) {
	start := time.Now()
	size, err := n.saveSnapshot(job)
	took := time.Since(start)
	switch {
	case errors.Is(err, errAborted):
	case errors.Is(err, errSnapshotOld):
		// A snapshot from the leader overtook this one.
		n.log.Debug("snapshot not saved: a newer one is installed", "index", job.md.Index)
	case err != nil:
		n.stats.snapshotFailures.Add(1)
		n.log.Error("take a snapshot", "index", job.md.Index, "err", err)
	default:
		n.stats.snapshotsTaken.Add(1)
		n.stats.snapshotBytes.Add(uint64(size))
		n.stats.snapshotNanos.Add(uint64(took))
		n.log.Info("snapshot taken", "index", job.md.Index, "bytes", size, "took", took.Round(time.Millisecond),
			"rate", fmt.Sprintf("%.1f MB/s", float64(size)/max(took.Seconds(), 1e-9)/1e6))
	}
}

// saveSnapshot writes job to a new snapshot file, makes it the stored
// snapshot, and only then compacts the log. It returns the data's size.
func (n *Node) saveSnapshot(job snapJob) (int64, error) {
	w, err := n.store.CreateSnapshot(job.md)
	if err != nil {
		return 0, err
	}
	defer w.Abort()
	if err := writeSnapshotData(abortWriter{w, n.abortc}, job.section, job.image); err != nil {
		return w.Size(), fmt.Errorf("write the snapshot: %w", err)
	}
	if err := w.Stage(); err != nil {
		return w.Size(), err
	}
	if err := n.store.SaveSnapshot(raftpb.Snapshot{Metadata: job.md}); err != nil {
		return w.Size(), err
	}
	if err := n.store.Compact(job.md.Index); err != nil {
		return w.Size(), fmt.Errorf("compact the log: %w", err)
	}
	return w.Size(), nil
}

// abortWriter fails writes once abort is closed.
type abortWriter struct {
	w     io.Writer
	abort <-chan struct{}
}

func (w abortWriter) Write(p []byte) (int, error) {
	select {
	case <-w.abort:
		return 0, errAborted
	default:
		return w.w.Write(p)
	}
}

// restoreSnapshot replaces the state machine's state (and the node's own,
// through its section) with the snapshot md, streamed from its file.
func (n *Node) restoreSnapshot(a *applier, md raftpb.SnapshotMetadata) error {
	r, err := n.store.OpenSnapshot(md.Index, md.Term)
	if err != nil {
		return err
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	size, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("read the node section's length: %w", noEOF(err))
	}
	if size > maxNodeSection {
		return fmt.Errorf("node section of %d bytes exceeds the %d byte limit", size, maxNodeSection)
	}
	section := make([]byte, size)
	if _, err := io.ReadFull(br, section); err != nil {
		return fmt.Errorf("read the node section: %w", noEOF(err))
	}
	if err := n.restoreNodeSection(a, section); err != nil {
		return fmt.Errorf("restore the node section: %w", err)
	}
	if err := n.cfg.StateMachine.Restore(br); err != nil {
		return fmt.Errorf("restore the state machine: %w", err)
	}
	// The file's checksum of the whole is checked at its end: read to it,
	// whether or not the state machine did.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("read the snapshot to its end: %w", err)
	}
	a.installed(md)
	n.stats.snapshotsRestored.Add(1)
	return nil
}

// noEOF makes running out of data early an error of its own.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// snapshotFiles gives the transport the node's snapshot files: the ones it
// sends, and a place for the ones it receives. A received snapshot is
// staged, and adopted by the storage when the core's Ready carries it.
type snapshotFiles struct{ store snapStore }

var _ transport.Snapshots = snapshotFiles{}

func (s snapshotFiles) Open(index, term uint64) (io.ReadCloser, int64, error) {
	r, err := s.store.OpenSnapshot(index, term)
	if err != nil {
		return nil, 0, err
	}
	return r, r.Size(), nil
}

func (s snapshotFiles) Receive(m raftpb.SnapshotMetadata, size int64) (transport.SnapshotSink, error) {
	w, err := s.store.CreateSnapshot(m)
	if err != nil {
		return nil, err
	}
	return &snapshotSink{w: w, size: size}, nil
}

// snapshotSink stages a snapshot arriving from a peer.
type snapshotSink struct {
	w    *storage.SnapshotWriter
	size int64
}

func (s *snapshotSink) Write(p []byte) (int, error) {
	if s.w.Size()+int64(len(p)) > s.size {
		return 0, errors.New("more snapshot data than announced")
	}
	return s.w.Write(p)
}

func (s *snapshotSink) Commit() error {
	if s.w.Size() != s.size {
		return fmt.Errorf("snapshot data is %d bytes, %d announced", s.w.Size(), s.size)
	}
	return s.w.Stage()
}

func (s *snapshotSink) Abort() { s.w.Abort() }
