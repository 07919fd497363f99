package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/raftkv/raftkv/storage/internal/vfs"
	"github.com/raftkv/raftkv/storage/wal"
)

// The identity file is one WAL-framed record:
//
//	magic "raftkvid" | version 1 | node id uint64 LE | cluster id uint64 LE
const (
	identityFile    = "IDENTITY"
	identityMagic   = "raftkvid"
	identityVersion = 1
	identityType    = 1
	identitySize    = wal.FrameSize + len(identityMagic) + 1 + 16
)

// ReadIdentity returns the node and cluster ids recorded in the data
// directory dir, so that a restart needs nothing but the directory.
func ReadIdentity(dir string) (nodeID, clusterID uint64, err error) {
	return readIdentity(vfs.OS{}, dir)
}

func readIdentity(fsys vfs.FS, dir string) (nodeID, clusterID uint64, err error) {
	path := filepath.Join(dir, identityFile)
	f, err := fsys.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("storage: read identity: %w", err)
	}
	defer f.Close()
	buf := make([]byte, identitySize+1) // one more, to notice trailing bytes
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, 0, fmt.Errorf("storage: read identity %s: %w", path, err)
	}
	typ, p, size, err := wal.DecodeRecord(buf[:n])
	switch {
	case err != nil:
	case size != n:
		err = fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, n-size)
	case typ != identityType || len(p) != identitySize-wal.FrameSize || string(p[:len(identityMagic)]) != identityMagic:
		err = fmt.Errorf("%w: not an identity record", ErrCorrupt)
	case p[len(identityMagic)] != identityVersion:
		err = fmt.Errorf("%w: unsupported identity version %d", ErrCorrupt, p[len(identityMagic)])
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: file cut short", ErrCorrupt)
		}
		return 0, 0, fmt.Errorf("storage: identity %s offset 0: %w", path, err)
	}
	p = p[len(identityMagic)+1:]
	return binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:]), nil
}

// checkIdentity records the identity in a new directory, or checks the one
// recorded. fresh says whether the directory holds no log yet.
func checkIdentity(fsys vfs.FS, dir string, nodeID, clusterID uint64, fresh bool, sync bool) error {
	gotNode, gotCluster, err := readIdentity(fsys, dir)
	switch {
	case err == nil:
		if gotNode != nodeID || gotCluster != clusterID {
			return fmt.Errorf("%w: %s holds node %d of cluster %d, but node %d of cluster %d was asked for",
				ErrIdentityMismatch, dir, gotNode, gotCluster, nodeID, clusterID)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	case !fresh:
		return fmt.Errorf("storage: %s: %w: the log exists but the identity file is missing", dir, ErrCorrupt)
	}
	p := []byte(identityMagic)
	p = append(p, identityVersion)
	p = binary.LittleEndian.AppendUint64(p, nodeID)
	p = binary.LittleEndian.AppendUint64(p, clusterID)
	rec := wal.AppendRecord(nil, identityType, p)
	f, err := vfs.WriteNew(fsys, filepath.Join(dir, identityFile), sync, func(w io.Writer) error {
		_, err := w.Write(rec)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: record identity: %w", err)
	}
	return f.Close()
}
