package node

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/raft/raftpb"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/transport"
)

// How founders agree on a cluster id.
//
// A cluster's id must be new for each cluster: nodes check it at every
// connection, and a node left over from an earlier cluster started with the
// same member list must be refused, or it takes over the new nodes with its
// old log. So the id cannot be a function of the member list, nor of
// anything the operator typed. It is drawn at random, and since founders
// start separately, they must agree on it: each founder draws a random
// nonce at its first start and keeps it in its data directory; founders
// exchange nonces (a hello query on the peer port) until each knows every
// founder's; the cluster id is a hash of the founders and their nonces.
// Each founder computes it on its own and gets the same value.
//
// A founder starts raft only once it knows every founder's nonce, so a
// cluster is founded only once all its founders have run, and each settled
// founder knows the nonces it was founded with. A founder that meets a
// settled one (it crashed before it learned the last nonce; the others did
// not wait) adopts the settled one's cluster id only if that cluster was
// founded with its own nonce, that is with this very data directory. A
// node left over from an earlier cluster was founded with other nonces: the
// new founders refuse it, with a message that says so, and it refuses them.
// The same rule refuses a founder whose data directory was wiped after the
// cluster was founded: it would come back without the log it promised to
// keep. (It must be removed and replaced by a node that joins.)
//
// Why founders wait for each other rather than, say, letting the first
// leader draw the id: a founder that finds its peers already running under
// some id cannot tell a cluster the others founded without it (it started
// late) from one left over from earlier with the same member list. Only its
// own nonce, which nobody else could have used, tells them apart, so every
// founder's nonce must be in the id. The price: a cluster is founded only
// once all its founders have started (each logs whom it waits for); a
// founder that never comes is left out of --cluster, and added later.
//
// Until it is founded, a founder's transport uses its own nonce as cluster
// id, so that no raft stream is accepted in either direction.

// foundingHash identifies a list of founders, whatever their order, so that
// founders started with different lists notice.
func foundingHash(members []Member) uint64 {
	lines := make([]string, len(members))
	for i, m := range members {
		lines[i] = m.Name + "=" + m.Addr
	}
	slices.Sort(lines)
	return hashID(strings.Join(lines, "\n"))
}

// clusterIDOf is the cluster id of founders members with nonces.
func clusterIDOf(members []Member, nonces map[string]uint64) uint64 {
	lines := make([]string, len(members))
	for i, m := range members {
		lines[i] = fmt.Sprintf("%s=%s#%016x", m.Name, m.Addr, nonces[m.Name])
	}
	slices.Sort(lines)
	return hashID(strings.Join(lines, "\n"))
}

// FoundConfig configures Found.
type FoundConfig struct {
	// Name is this founder's name; it must be one of Members.
	Name string
	// DataDir is where the node will keep its data; Found records its
	// identity there.
	DataDir string
	// Members are the founders, this node included.
	Members []Member
	// ListenAddr is the address to listen on for the other founders.
	// Empty means this member's Addr.
	ListenAddr string
	// Logger receives progress. Default slog.Default().
	Logger *slog.Logger
}

// ErrLeftover: a founder found a node of another cluster at a founder's
// address, or was itself refused as not belonging to the cluster founded
// with its name.
var ErrLeftover = errors.New("node: a member belongs to another cluster")

// helloEvery is how often a founder asks the founders it has not heard
// from yet; waitLogEvery how often it says who it waits for.
// lingerFor is how long a founder that knows every nonce goes on
// answering before it starts raft: the founder whose hello completed it may
// not have its answer yet. (The running node answers too, but the gap
// between the two would make that founder wait.)
const (
	helloEvery   = 200 * time.Millisecond
	waitLogEvery = 5 * time.Second
	lingerFor    = time.Second
)

// Found agrees with the other founders of a new cluster on its random id
// (see the comment above foundingHash for how and why) and records this
// node's identity in cfg.DataDir, so that Start can then start it. It
// returns once every founder's nonce is known, or ctx ends. It returns at
// once if the directory already holds a node that is founded or joined.
// It fails with ErrMembershipMismatch if the directory holds another node,
// or a founder of another member list, and with ErrLeftover if a founder's
// address answers for a cluster founded without this node.
func Found(ctx context.Context, cfg FoundConfig) (Identity, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	self, ok := memberByName(cfg.Members, cfg.Name)
	if !ok {
		return Identity{}, fmt.Errorf("found a cluster: %q is not one of its members", cfg.Name)
	}
	if err := checkMembers(cfg.Members); err != nil {
		return Identity{}, fmt.Errorf("found a cluster: %w", err)
	}
	if len(cfg.Members) > maxFounders {
		return Identity{}, fmt.Errorf("found a cluster: %d founders, at most %d (more can join)", len(cfg.Members), maxFounders)
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = self.Addr
	}
	id, err := foundingIdentity(cfg, self)
	if err != nil || id.ClusterID != 0 {
		return id, err
	}
	f := &founder{
		id:      id,
		hash:    foundingHash(cfg.Members),
		nonces:  map[string]uint64{id.Name: id.Founding.Nonce},
		learned: make(chan struct{}, 1),
		log:     cfg.Logger.With("node", id.Name),
	}
	if !f.complete() {
		if err := f.exchange(ctx, cfg.ListenAddr); err != nil {
			return Identity{}, err
		}
	}
	id = f.founded()
	if err := saveIdentity(cfg.DataDir, id); err != nil {
		return Identity{}, err
	}
	f.log.Info("cluster founded", "cluster", fmt.Sprintf("%016x", id.ClusterID), "founders", len(id.Members))
	return id, nil
}

// foundingIdentity returns the identity stored in the directory, or records
// a new founder's with a fresh nonce.
func foundingIdentity(cfg FoundConfig, self Member) (Identity, error) {
	id, err := LoadIdentity(cfg.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Identity{}, err
	case id.Name != cfg.Name:
		return Identity{}, fmt.Errorf("%w: %s holds %s, not node %q", ErrMembershipMismatch, cfg.DataDir, id, cfg.Name)
	case id.ClusterID != 0:
		return id, nil // founded or joined already: a restart
	case foundingHash(id.Members) != foundingHash(cfg.Members):
		return Identity{}, fmt.Errorf("%w: %s began founding a cluster of other members (%s); empty it to found another",
			ErrMembershipMismatch, cfg.DataDir, memberList(id.Members))
	default:
		return id, nil // a founder that stopped before it was founded
	}
	if err := checkNoStorage(cfg.DataDir); err != nil {
		return Identity{}, err
	}
	id = Identity{
		Name: self.Name, ID: self.ID, Addr: self.Addr,
		Members:  sortedMembers(cfg.Members),
		Founding: &Founding{Nonce: randomNonZero()},
	}
	if err := mkdirAll(cfg.DataDir); err != nil {
		return Identity{}, err
	}
	if err := saveIdentity(cfg.DataDir, id); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// checkNoStorage refuses a directory that holds a log but no identity file:
// not one this version wrote, or damaged.
func checkNoStorage(dir string) error {
	if _, _, err := storage.ReadIdentity(dir); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s holds a log but no %s", ErrMembershipMismatch, dir, identityFile)
	}
	return nil
}

func randomNonZero() uint64 {
	var b [8]byte
	for {
		crand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

func memberList(ms []Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name + "=" + m.Addr
	}
	return strings.Join(parts, ",")
}

// founder is a founding node while it collects the founders' nonces.
type founder struct {
	id   Identity // ClusterID 0; Founding.Nonce set
	hash uint64
	log  *slog.Logger

	mu      sync.Mutex        // guards nonces and adopted
	nonces  map[string]uint64 // by founder name, own included
	adopted *Identity         // set when a founded peer's cluster was adopted
	// learned is signalled (buffered 1) when a hello brings a new nonce.
	learned chan struct{}
}

// complete reports whether the founding is done.
func (f *founder) complete() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adopted != nil || len(f.nonces) == len(f.id.Members)
}

// founded returns the identity once complete.
func (f *founder) founded() Identity {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.adopted != nil {
		return *f.adopted
	}
	id := f.id
	id.Founding = &Founding{Nonce: f.id.Founding.Nonce, Nonces: maps.Clone(f.nonces)}
	id.ClusterID = clusterIDOf(id.Members, f.nonces)
	return id
}

// exchange listens for the other founders' hellos and asks those not heard
// from, until every nonce is known.
func (f *founder) exchange(ctx context.Context, listen string) error {
	tr, err := transport.New(transport.Config{
		ID: f.id.ID,
		// Matches no cluster, so no raft stream is accepted before the
		// cluster is founded.
		ClusterID:  f.id.Founding.Nonce,
		ListenAddr: listen,
		Query:      f.answer,
		Logger:     f.log,
	}, noMessages{})
	if err != nil {
		return fmt.Errorf("found a cluster: %w", err)
	}
	if err := tr.Start(); err != nil {
		tr.Close()
		return fmt.Errorf("found a cluster: listen for founders on %s: %w", listen, err)
	}
	defer tr.Close()
	f.log.Info("founding a cluster: exchanging nonces with the other founders", "founders", memberList(f.id.Members))
	ask := time.NewTicker(helloEvery)
	defer ask.Stop()
	lastLog := time.Now()
	for !f.complete() {
		for _, m := range f.waitingFor() {
			if err := f.ask(ctx, tr, m); err != nil {
				return err
			}
			if f.complete() {
				break
			}
		}
		if waiting := f.waitingFor(); len(waiting) > 0 && time.Since(lastLog) >= waitLogEvery {
			lastLog = time.Now()
			f.log.Info("founding a cluster: waiting for founders to start", "waiting_for", memberList(waiting))
		}
		select {
		case <-ask.C:
		case <-f.learned:
		case <-ctx.Done():
			return fmt.Errorf("found a cluster: waiting for %s: %w", memberList(f.waitingFor()), ctx.Err())
		}
	}
	linger := time.NewTimer(lingerFor)
	defer linger.Stop()
	select {
	case <-linger.C:
	case <-ctx.Done():
	}
	return nil
}

// waitingFor returns the founders whose nonce is not known yet.
func (f *founder) waitingFor() []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Member
	for _, m := range f.id.Members {
		if _, ok := f.nonces[m.Name]; !ok {
			out = append(out, m)
		}
	}
	return out
}

// ask sends m a hello. Not reaching m is no error: it may not have started
// yet. Its answer fails the founding only when it proves that m, or this
// node, belongs elsewhere.
func (f *founder) ask(ctx context.Context, tr *transport.Transport, m Member) error {
	req := hello{hash: f.hash, nonce: f.id.Founding.Nonce, name: f.id.Name}.marshal()
	b, err := tr.Query(ctx, m.ID, m.Addr, req)
	if errors.Is(err, transport.ErrQueryRefused) {
		return fmt.Errorf("found a cluster: founder %s at %s: %w", m.Name, m.Addr, err)
	}
	if err != nil {
		f.log.Debug("founder not reachable yet", "founder", m.Name, "addr", m.Addr, "err", err)
		return nil
	}
	ans, err := unmarshalHelloAnswer(b)
	if err != nil {
		return fmt.Errorf("found a cluster: founder %s at %s: bad answer: %w", m.Name, m.Addr, err)
	}
	if ans.founded {
		return f.adopt(m, ans)
	}
	f.record(m.Name, ans.nonce)
	return nil
}

// adopt takes the cluster id of founder m, founded already, if it was
// founded with this node's nonce.
func (f *founder) adopt(m Member, ans helloAnswer) error {
	mine := f.id.Founding.Nonce
	if ans.nonces[f.id.Name] != mine {
		return fmt.Errorf("%w: founder %s at %s belongs to cluster %016x, which was founded without this data directory: "+
			"either %s's data directory is left over from an earlier cluster (empty it and start it again), "+
			"or this node lost its data after the cluster was founded (remove it from the cluster and join a new node)",
			ErrLeftover, m.Name, m.Addr, ans.clusterID, m.Name)
	}
	for _, fm := range f.id.Members {
		if _, ok := ans.nonces[fm.Name]; !ok {
			return fmt.Errorf("%w: founder %s at %s was founded with other founders than %s", ErrLeftover, m.Name, m.Addr, memberList(f.id.Members))
		}
	}
	if len(ans.nonces) != len(f.id.Members) || clusterIDOf(f.id.Members, ans.nonces) != ans.clusterID {
		return fmt.Errorf("%w: founder %s at %s names cluster %016x, which its founders do not give", ErrLeftover, m.Name, m.Addr, ans.clusterID)
	}
	id := f.id
	id.ClusterID = ans.clusterID
	id.Founding = &Founding{Nonce: mine, Nonces: ans.nonces}
	f.mu.Lock()
	f.adopted = &id
	f.mu.Unlock()
	return nil
}

// record notes founder name's nonce. A nonce that changed means the
// founder's data directory was emptied and it drew again: while nobody is
// founded that is harmless, so the new one replaces the old.
func (f *founder) record(name string, nonce uint64) {
	f.mu.Lock()
	old, known := f.nonces[name]
	f.nonces[name] = nonce
	f.mu.Unlock()
	if known && old != nonce {
		f.log.Warn("a founder drew a new nonce: its data directory was emptied", "founder", name)
	}
	if !known || old != nonce {
		select {
		case f.learned <- struct{}{}:
		default:
		}
	}
}

// answer answers another founder's hello while this one is founding.
func (f *founder) answer(from uint64, req []byte) ([]byte, error) {
	h, err := checkHello(f.id, f.hash, from, req)
	if err != nil {
		return nil, err
	}
	if f.complete() {
		// Founded, lingering: the asker adopts the cluster, if it was
		// founded with its nonce.
		id := f.founded()
		return helloAnswer{founded: true, nonce: id.Founding.Nonce, clusterID: id.ClusterID, nonces: id.Founding.Nonces}.marshal(), nil
	}
	f.record(h.name, h.nonce)
	return helloAnswer{nonce: f.id.Founding.Nonce}.marshal(), nil
}

// checkHello decodes a hello to the founder id (whose founders hash to
// hash) from node from, and checks that it comes from one of its founders,
// started with the same founders.
func checkHello(id Identity, hash, from uint64, req []byte) (hello, error) {
	h, err := unmarshalHello(req)
	if err != nil {
		return hello{}, fmt.Errorf("bad hello: %w", err)
	}
	m, ok := memberByName(id.Members, h.name)
	switch {
	case !ok || m.ID != from:
		return hello{}, fmt.Errorf("%s is not one of the founders of %s's cluster (%s)", h.name, id.Name, memberList(id.Members))
	case h.hash != hash:
		return hello{}, fmt.Errorf("%s was started with other founders than %s was (%s)", h.name, id.Name, memberList(id.Members))
	case h.nonce == 0:
		return hello{}, errors.New("bad hello: nonce 0")
	}
	return h, nil
}

// noMessages is the handler of a founder's transport, which accepts no
// raft stream (its cluster id is its own nonce).
type noMessages struct{}

func (noMessages) Deliver(raftpb.Message)      {}
func (noMessages) ReportUnreachable(uint64)    {}
func (noMessages) ReportSnapshot(uint64, bool) {}
