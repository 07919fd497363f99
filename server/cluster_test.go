package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testenv"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
)

// Shared test helpers, named as the tests here have always called them.
var (
	eventually = testenv.Eventually
	freeAddr   = testenv.FreeAddr
)

const waitTimeout = testenv.WaitTimeout

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// cluster is three nodes in this process on loopback, each with its kv
// store, server and go-redis client.
type cluster struct {
	t      testing.TB
	cfgs   []node.Config
	tweak  func(*Config)
	nodes  []*node.Node // nil while stopped
	srvs   []*Server
	rdbs   []*redis.Client
	client *client.Client // HTTP client of every node
}

// newCluster starts a three-node cluster; tweak, if not nil, adjusts each
// server's configuration.
func newCluster(t testing.TB, tweak func(*Config)) *cluster {
	t.Helper()
	return newClusterNodes(t, nil, tweak)
}

// newClusterNodes is newCluster with nodeTweak, if not nil, adjusting each
// node's configuration.
func newClusterNodes(t testing.TB, nodeTweak func(*node.Config), tweak func(*Config)) *cluster {
	t.Helper()
	const size = 3
	c := &cluster{t: t, tweak: tweak, nodes: make([]*node.Node, size), srvs: make([]*Server, size), rdbs: make([]*redis.Client, size)}
	var members []node.Member
	for i := range size {
		members = append(members, node.NewMember(fmt.Sprintf("n%d", i+1), freeAddr(t)))
	}
	cluster := rand.Uint64() | 1
	for i := range size {
		c.cfgs = append(c.cfgs, node.Config{
			Name:           members[i].Name,
			ClusterID:      cluster,
			DataDir:        t.TempDir(),
			Members:        members,
			TickInterval:   10 * time.Millisecond,
			ElectionTicks:  10,
			HeartbeatTicks: 1,
			Logger:         testenv.Logger(t).With("test_node", i+1),
		})
		if nodeTweak != nil {
			nodeTweak(&c.cfgs[i])
		}
	}
	t.Cleanup(c.close)
	for i := range size {
		c.start(i)
	}
	var eps []string
	for _, s := range c.srvs {
		eps = append(eps, s.HTTPAddr())
	}
	var err error
	if c.client, err = client.New(eps, client.WithTimeout(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	c.leader()
	return c
}

// slowWrites gives writes of values near the size limit, which take a
// while on a busy machine, the time they need.
func slowWrites(cfg *Config) {
	cfg.Timeout = waitTimeout
	cfg.ProposalTimeout = waitTimeout
}

// start starts node i, with a fresh store restored from its data
// directory, and its server.
func (c *cluster) start(i int) {
	c.t.Helper()
	sm := NewStateMachine(kv.New())
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := c.cfgs[i]
	cfg.StateMachine = sm
	cfg.ClientURL = "http://" + httpLn.Addr().String()
	n, err := node.Start(cfg)
	if err != nil {
		httpLn.Close()
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
	scfg := Config{
		RedisAddr:       "127.0.0.1:0",
		HTTPListener:    httpLn,
		Node:            n,
		StateMachine:    sm,
		Logger:          cfg.Logger,
		ProposalTimeout: 300 * time.Millisecond,
	}
	if c.tweak != nil {
		c.tweak(&scfg)
	}
	srv, err := New(scfg)
	if err != nil {
		n.Close()
		c.t.Fatalf("server %d: %v", i+1, err)
	}
	if err := srv.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i], c.srvs[i] = n, srv
	c.rdbs[i] = redis.NewClient(&redis.Options{
		Addr:         srv.RedisAddr(),
		MaxRetries:   -1, // the tests want to see every error
		PoolSize:     64,
		ReadTimeout:  waitTimeout,
		WriteTimeout: waitTimeout,
	})
}

// stop closes node i's client, server and node.
func (c *cluster) stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	c.rdbs[i].Close()
	if err := c.srvs[i].Close(); err != nil {
		c.t.Errorf("close server %d: %v", i+1, err)
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close node %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

func (c *cluster) close() {
	if c.client != nil {
		c.client.Close()
	}
	for i := range c.nodes {
		c.stop(i)
	}
}

// leader waits until every running node agrees on one leader in one term,
// and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	return testenv.AgreedLeader(c.t, func() []testenv.View {
		views := make([]testenv.View, len(c.nodes))
		for i, n := range c.nodes {
			if n != nil {
				st := n.Status()
				views[i] = testenv.View{Running: true, ID: st.ID, Lead: st.Lead, Term: st.Term, Leading: st.Role == raft.Leader}
			}
		}
		return views
	})
}

// followers returns the indexes of the running nodes other than lead.
func (c *cluster) followers(lead int) []int {
	var out []int
	for i, n := range c.nodes {
		if i != lead && n != nil {
			out = append(out, i)
		}
	}
	return out
}
