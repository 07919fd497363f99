package node

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// membershipFile holds a node's identity and the cluster it was started in,
// so that a restarted node needs nothing but its data directory.
const membershipFile = "membership.json"

// maxMembershipSize bounds what LoadMembership reads: the file is tiny, and
// anything bigger is not ours.
const maxMembershipSize = 1 << 20

// Membership is who a node is and which cluster it was started in, as
// stored in its data directory.
type Membership struct {
	ClusterID uint64   `json:"cluster_id"`
	ID        uint64   `json:"id"`
	Members   []Member `json:"members"`
}

// Self returns this node's own member entry.
func (m Membership) Self() (Member, bool) {
	i := slices.IndexFunc(m.Members, func(x Member) bool { return x.ID == m.ID })
	if i < 0 {
		return Member{}, false
	}
	return m.Members[i], true
}

// String describes m for error messages.
func (m Membership) String() string {
	self, _ := m.Self()
	return fmt.Sprintf("node %q (id %016x) of cluster %016x with %d members", self.Name, m.ID, m.ClusterID, len(m.Members))
}

// equal reports whether m and o describe the same node in the same cluster,
// whatever order the members are listed in.
func (m Membership) equal(o Membership) bool {
	if m.ClusterID != o.ClusterID || m.ID != o.ID || len(m.Members) != len(o.Members) {
		return false
	}
	a, b := sortedMembers(m.Members), sortedMembers(o.Members)
	return slices.Equal(a, b)
}

func sortedMembers(ms []Member) []Member {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return s
}

// The file is one line of JSON, readable by operators, with a CRC-32C of
// the membership's exact bytes so that a damaged file is refused rather
// than misread.
type membershipEnvelope struct {
	Membership json.RawMessage `json:"membership"`
	CRC32C     uint32          `json:"crc32c"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeMembership(m Membership) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(membershipEnvelope{Membership: body, CRC32C: crc32.Checksum(body, castagnoli)})
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func decodeMembership(b []byte) (Membership, error) {
	var env membershipEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Membership{}, fmt.Errorf("decode: %w", err)
	}
	if got := crc32.Checksum(env.Membership, castagnoli); got != env.CRC32C {
		return Membership{}, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", env.CRC32C, got)
	}
	var m Membership
	if err := json.Unmarshal(env.Membership, &m); err != nil {
		return Membership{}, fmt.Errorf("decode: %w", err)
	}
	if _, ok := m.Self(); !ok || m.ClusterID == 0 {
		return Membership{}, fmt.Errorf("node %x is not one of its members, or the cluster id is 0", m.ID)
	}
	return m, nil
}

// LoadMembership reads the identity and cluster stored in dataDir. The error
// wraps fs.ErrNotExist when the directory holds none (a new node).
func LoadMembership(dataDir string) (Membership, error) {
	path := filepath.Join(dataDir, membershipFile)
	f, err := os.Open(path)
	if err != nil {
		return Membership{}, fmt.Errorf("load membership: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMembershipSize+1))
	if err != nil {
		return Membership{}, fmt.Errorf("load membership from %s: %w", path, err)
	}
	if len(b) > maxMembershipSize {
		return Membership{}, fmt.Errorf("load membership from %s: file larger than %d bytes", path, maxMembershipSize)
	}
	m, err := decodeMembership(b)
	if err != nil {
		return Membership{}, fmt.Errorf("load membership from %s: %w", path, err)
	}
	return m, nil
}

// saveMembership writes m to dataDir atomically and durably: a crash leaves
// either no file or the whole file.
func saveMembership(dataDir string, m Membership) error {
	b, err := encodeMembership(m)
	if err != nil {
		return fmt.Errorf("save membership: %w", err)
	}
	path := filepath.Join(dataDir, membershipFile)
	if err := writeFileSync(path, b); err != nil {
		return fmt.Errorf("save membership to %s: %w", path, err)
	}
	return nil
}

func writeFileSync(path string, b []byte) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// checkMembership compares the membership stored in dataDir with want. It
// reports whether the directory is new (nothing stored yet).
func checkMembership(dataDir string, want Membership) (fresh bool, err error) {
	have, err := LoadMembership(dataDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil
	case err != nil:
		return false, err
	case !have.equal(want):
		return false, fmt.Errorf("%w: %s holds %s; the configuration is %s", ErrMembershipMismatch, dataDir, have, want)
	}
	return false, nil
}
