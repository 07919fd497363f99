package node

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Member is one node of the cluster as the operator names it.
type Member struct {
	// Name is the operator's name for the node, such as "n1" or, in the
	// original command-line form, its peer address.
	Name string `json:"name"`
	// ID is the raft id. A founder's is derived from its name (MemberID),
	// so that founders started separately agree on it; a node that joins
	// gets a random one from the leader, so that a node that replaces a
	// removed one under the same name is never taken for it.
	ID uint64 `json:"id"`
	// Addr is the peer address other members dial.
	Addr string `json:"addr"`
}

// NewMember returns the founder named name at peer address addr.
func NewMember(name, addr string) Member {
	return Member{Name: name, ID: MemberID(name), Addr: addr}
}

// MemberID derives a founder's raft id from its name (64-bit FNV-1a), so
// that founders started separately agree on each other's ids.
func MemberID(name string) uint64 { return hashID(name) }

// hashID is the 64-bit FNV-1a hash of s, made non-zero: 0 means "none" to
// the core and on the wire. Stored and exchanged ids depend on it: never
// change it.
func hashID(s string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, s)
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Limits on what names a member: names and addresses travel in the log and
// in snapshots, and come from the network.
const (
	maxNameLen = 64
	maxAddrLen = 255
)

// CheckName reports whether name can name a member: 1 to 64 letters,
// digits and ".-_:[]" (so that a peer address, the original form's name,
// is one).
func CheckName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("member name %q: want 1 to %d characters", name, maxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:[]", r)) {
			return fmt.Errorf("member name %q: only letters, digits and .-_:[] are allowed", name)
		}
	}
	return nil
}

// CheckAddr reports whether addr is a peer address others can dial:
// host:port with a host and a non-zero port.
func CheckAddr(addr string) error {
	if len(addr) > maxAddrLen {
		return fmt.Errorf("address %.20q...: longer than %d bytes", addr, maxAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("address %q: bad port", addr)
	}
	if host == "" {
		return fmt.Errorf("address %q: peers need a host to dial", addr)
	}
	return nil
}

// checkMembers checks a list of members given to a new node: valid, and no
// two with the same name, id or address.
func checkMembers(ms []Member) error {
	var errs []error
	ids := make(map[uint64]string, len(ms))
	addrs := make(map[string]string, len(ms))
	names := make(map[string]bool, len(ms))
	for _, m := range ms {
		if err := CheckName(m.Name); err != nil {
			errs = append(errs, err)
		}
		if m.ID == 0 {
			errs = append(errs, fmt.Errorf("member %q: id 0", m.Name))
		}
		if err := CheckAddr(m.Addr); err != nil {
			errs = append(errs, fmt.Errorf("member %q: %w", m.Name, err))
		}
		if other, dup := ids[m.ID]; dup {
			errs = append(errs, fmt.Errorf("members %q and %q have the same id", other, m.Name))
		}
		if other, dup := addrs[m.Addr]; dup {
			errs = append(errs, fmt.Errorf("members %q and %q have the same address %s", other, m.Name, m.Addr))
		}
		if names[m.Name] {
			errs = append(errs, fmt.Errorf("member %q is listed twice", m.Name))
		}
		ids[m.ID], addrs[m.Addr], names[m.Name] = m.Name, m.Name, true
	}
	return errors.Join(errs...)
}

// Identity is who a node is, as its data directory records it, so that a
// restart needs nothing but the directory. It is not the cluster's
// membership: that lives in the log and in snapshots, and changes.
type Identity struct {
	Name string `json:"name"`
	ID   uint64 `json:"id"`
	// Addr is the peer address this node gave the others.
	Addr string `json:"addr"`
	// ClusterID is the cluster's id; 0 while a founder is still agreeing
	// on it with the other founders (see Found).
	ClusterID uint64 `json:"cluster_id"`
	// Joined: the node joined a running cluster rather than found it.
	Joined bool `json:"joined,omitempty"`
	// Members are the cluster's members as this node first knew them: the
	// founders, or the members the answer to its join request listed.
	// They are the peers it dials until its log and snapshots say more.
	Members []Member `json:"members"`
	// Founding is a founder's part in agreeing on the cluster id, if it
	// took part (see Found).
	Founding *Founding `json:"founding,omitempty"`
	// RemovedAt is the index of the change that removed this node from the
	// cluster, once it applied it; such a node does not start again.
	RemovedAt uint64 `json:"removed_at,omitempty"`
}

// Founding is what a founder drew and learned while founding the cluster.
type Founding struct {
	// Nonce is the random number this founder drew at its first start.
	Nonce uint64 `json:"nonce"`
	// Nonces are every founder's, by name, once founded.
	Nonces map[string]uint64 `json:"nonces,omitempty"`
}

// String describes id for messages.
func (id Identity) String() string {
	if id.ClusterID == 0 {
		return fmt.Sprintf("node %q (founding a cluster)", id.Name)
	}
	return fmt.Sprintf("node %q of cluster %016x", id.Name, id.ClusterID)
}

func (id Identity) check() error {
	var errs []error
	if err := CheckName(id.Name); err != nil {
		errs = append(errs, err)
	}
	if self, ok := memberByName(id.Members, id.Name); id.ID == 0 || (ok && self.ID != id.ID) {
		errs = append(errs, fmt.Errorf("id %016x is 0 or not the one its members give %q", id.ID, id.Name))
	}
	if err := CheckAddr(id.Addr); err != nil {
		errs = append(errs, err)
	}
	if err := checkMembers(id.Members); err != nil {
		errs = append(errs, err)
	}
	if id.ClusterID == 0 && id.Founding == nil {
		errs = append(errs, errors.New("no cluster id"))
	}
	return errors.Join(errs...)
}

// identityFile holds a node's Identity. It is one line of JSON, readable
// by operators, with a CRC-32C of the identity's exact bytes so that a
// damaged file is refused rather than misread.
const identityFile = "identity.json"

// maxIdentitySize bounds what LoadIdentity reads: the file is small, and
// anything bigger is not ours.
const maxIdentitySize = 1 << 20

type identityEnvelope struct {
	Identity json.RawMessage `json:"identity"`
	CRC32C   uint32          `json:"crc32c"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeIdentity(id Identity) ([]byte, error) {
	body, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(identityEnvelope{Identity: body, CRC32C: crc32.Checksum(body, castagnoli)})
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func decodeIdentity(b []byte) (Identity, error) {
	var env identityEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Identity{}, fmt.Errorf("decode: %w", err)
	}
	if got := crc32.Checksum(env.Identity, castagnoli); got != env.CRC32C {
		return Identity{}, fmt.Errorf("checksum mismatch: stored %08x, computed %08x", env.CRC32C, got)
	}
	var id Identity
	if err := json.Unmarshal(env.Identity, &id); err != nil {
		return Identity{}, fmt.Errorf("decode: %w", err)
	}
	if err := id.check(); err != nil {
		return Identity{}, fmt.Errorf("invalid identity: %w", err)
	}
	return id, nil
}

// LoadIdentity reads the identity stored in dataDir. The error wraps
// fs.ErrNotExist when the directory holds none (a new node).
func LoadIdentity(dataDir string) (Identity, error) {
	path := filepath.Join(dataDir, identityFile)
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, fmt.Errorf("load identity: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIdentitySize+1))
	if err != nil {
		return Identity{}, fmt.Errorf("load identity from %s: %w", path, err)
	}
	if len(b) > maxIdentitySize {
		return Identity{}, fmt.Errorf("load identity from %s: file larger than %d bytes", path, maxIdentitySize)
	}
	id, err := decodeIdentity(b)
	if err != nil {
		return Identity{}, fmt.Errorf("load identity from %s: %w", path, err)
	}
	return id, nil
}

// saveIdentity writes id to dataDir atomically and durably: a crash leaves
// the old file or the new one, whole.
func saveIdentity(dataDir string, id Identity) error {
	b, err := encodeIdentity(id)
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	path := filepath.Join(dataDir, identityFile)
	if err := writeFileSync(path, b); err != nil {
		return fmt.Errorf("save identity to %s: %w", path, err)
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

func sortedMembers(ms []Member) []Member {
	s := slices.Clone(ms)
	slices.SortFunc(s, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return s
}

func memberByName(ms []Member, name string) (Member, bool) {
	i := slices.IndexFunc(ms, func(m Member) bool { return m.Name == name })
	if i < 0 {
		return Member{}, false
	}
	return ms[i], true
}

func mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}
