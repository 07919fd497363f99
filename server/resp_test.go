package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
)

// TestRESPWritesThroughEveryNodeReadFromEvery writes through each node,
// followers included, and reads every key back from every node: reads are
// linearizable, so each sees every write acknowledged before it started.
func TestRESPWritesThroughEveryNodeReadFromEvery(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	for i, rdb := range c.rdbs {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 0).Err(); err != nil {
			t.Fatalf("SET through node %d: %v", i+1, err)
		}
		for j, other := range c.rdbs {
			for k := 0; k <= i; k++ {
				got, err := other.Get(ctx, fmt.Sprintf("k%d", k)).Result()
				if want := fmt.Sprintf("v%d", k); err != nil || got != want {
					t.Fatalf("GET k%d from node %d after SET through node %d: got %q, %v; want %q", k, j+1, i+1, got, err, want)
				}
			}
		}
	}
	if n, err := c.rdbs[0].DBSize(ctx).Result(); err != nil || n != 3 {
		t.Fatalf("DBSIZE = %d, %v; want 3", n, err)
	}
}

// step is one command of a scripted RESP session and its expected reply:
// want is compared with go-redis' decoding of the reply (string, int64,
// []any, nil for a nil reply), wantErr with the error text.
type step struct {
	args    []any
	want    any
	wantErr string
}

func runSteps(t *testing.T, rdb *redis.Client, steps []step) {
	t.Helper()
	ctx := testContext(t)
	for _, s := range steps {
		got, err := rdb.Do(ctx, s.args...).Result()
		switch {
		case s.wantErr != "":
			if err == nil || err.Error() != s.wantErr {
				t.Errorf("%v: got %#v, %v; want error %q", s.args, got, err, s.wantErr)
			}
		case s.want == nil:
			if err != redis.Nil {
				t.Errorf("%v: got %#v, %v; want nil", s.args, got, err)
			}
		case err != nil || !reflect.DeepEqual(got, s.want):
			t.Errorf("%v: got %#v, %v; want %#v", s.args, got, err, s.want)
		}
	}
}

func TestRESPCommands(t *testing.T) {
	c := newCluster(t, nil)
	lead := c.leader()
	// Through a follower, so that every write is forwarded.
	rdb := c.rdbs[c.followers(lead)[0]]
	runSteps(t, rdb, []step{
		{args: []any{"PING"}, want: "PONG"},
		{args: []any{"ping", "hi"}, want: "hi"},
		{args: []any{"ECHO", "x y"}, want: "x y"},
		{args: []any{"GET", "k"}, want: nil},
		{args: []any{"SET", "k", "v"}, want: "OK"},
		{args: []any{"GET", "k"}, want: "v"},
		{args: []any{"SET", "k", "w", "NX"}, want: nil},
		{args: []any{"SET", "missing", "w", "XX"}, want: nil},
		{args: []any{"SET", "k", "w", "xx", "get"}, want: "v"},
		{args: []any{"SET", "new", "1", "GET"}, want: nil},
		{args: []any{"GET", "new"}, want: "1"},
		{args: []any{"SET", "k", "v", "NX", "XX"}, wantErr: "ERR syntax error"},
		{args: []any{"SET", "k", "v", "BOGUS"}, wantErr: "ERR syntax error"},
		{args: []any{"SET", "k", "v", "EX", "10"}, wantErr: "ERR expirations are not supported: raftkv keys never expire"},
		{args: []any{"SET", "k"}, wantErr: "ERR wrong number of arguments for 'set' command"},
		{args: []any{"STRLEN", "k"}, want: int64(1)},
		{args: []any{"STRLEN", "missing"}, want: int64(0)},
		{args: []any{"APPEND", "k", "xyz"}, want: int64(4)},
		{args: []any{"APPEND", "fresh", "ab"}, want: int64(2)},
		{args: []any{"GET", "k"}, want: "wxyz"},
		{args: []any{"EXISTS", "k", "k", "missing", "fresh"}, want: int64(3)},
		{args: []any{"DEL", "fresh", "missing", "new"}, want: int64(2)},
		{args: []any{"EXISTS", "fresh"}, want: int64(0)},
		{args: []any{"INCR", "n"}, want: int64(1)},
		{args: []any{"INCRBY", "n", "41"}, want: int64(42)},
		{args: []any{"DECR", "n"}, want: int64(41)},
		{args: []any{"DECRBY", "n", "-9"}, want: int64(50)},
		{args: []any{"DECRBY", "n", "-9223372036854775808"}, wantErr: "ERR decrement would overflow"},
		{args: []any{"INCRBY", "n", "1x"}, wantErr: "ERR value is not an integer or out of range"},
		{args: []any{"INCRBY", "n", "9223372036854775807"}, wantErr: "ERR increment or decrement would overflow"},
		{args: []any{"INCR", "k"}, wantErr: "ERR value is not an integer or out of range"},
		{args: []any{"GET", "n"}, want: "50"},
		{args: []any{"MSET", "a", "1", "b", "2", "c", "3"}, want: "OK"},
		{args: []any{"MSET", "d", "1", "d", "2"}, want: "OK"},
		{args: []any{"GET", "d"}, want: "2"},
		{args: []any{"DEL", "d", "d"}, want: int64(1)},
		{args: []any{"MSET", "a", "1", "b"}, wantErr: "ERR wrong number of arguments for 'mset' command"},
		{args: []any{"MGET", "a", "missing", "c"}, want: []any{"1", nil, "3"}},
		{args: []any{"CAS", "a", "1", "one"}, want: int64(1)},
		{args: []any{"CAS", "a", "1", "uno"}, want: int64(0)},
		{args: []any{"CAS", "missing", "", "x"}, want: int64(0)},
		{args: []any{"GET", "a"}, want: "one"},
		{args: []any{"CAS", "a", "one"}, wantErr: "ERR wrong number of arguments for 'cas' command"},
		{args: []any{"DBSIZE"}, want: int64(5)}, // k n a b c
		{args: []any{"SELECT", "0"}, want: "OK"},
		{args: []any{"SELECT", "1"}, wantErr: "ERR DB index is out of range"},
		{args: []any{"CLIENT", "SETNAME", "tester"}, want: "OK"},
		{args: []any{"CLIENT", "SETNAME", "two words"}, wantErr: "ERR Client names cannot contain spaces, newlines or special characters."},
		{args: []any{"CLIENT", "NOPE"}, wantErr: "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."},
		{args: []any{"CONFIG", "GET", "save"}, want: []any{"save", ""}},
		{args: []any{"CONFIG", "GET", "append*"}, want: []any{"appendonly", "yes", "appendfsync", "always"}},
		{args: []any{"CONFIG", "SET", "save", ""}, wantErr: "ERR unknown subcommand 'SET'. Try CONFIG HELP."},
		{args: []any{"COMMAND", "COUNT"}, want: int64(26)},
		{args: []any{"COMMAND", "INFO", "get"}, want: []any{[]any{"get", int64(2), []any{"readonly", "fast"}, int64(1), int64(1), int64(1), []any{}, []any{}, []any{}, []any{}}}},
		{args: []any{"COMMAND", "DOCS"}, want: []any{}},
		{args: []any{"HELLO", "3"}, wantErr: "NOPROTO sorry, this protocol version is not supported"},
		{args: []any{"READONLY"}, want: "OK"},
		{args: []any{"READWRITE"}, want: "OK"},
		{args: []any{"FLUSHALL"}, wantErr: "ERR unknown command 'FLUSHALL', with args beginning with: "},
		{args: []any{"NOPE", "a", "b"}, wantErr: "ERR unknown command 'NOPE', with args beginning with: 'a' 'b' "},
		{args: []any{"GET"}, wantErr: "ERR wrong number of arguments for 'get' command"},
		{args: []any{"GET", "a", "b"}, wantErr: "ERR wrong number of arguments for 'get' command"},
	})
}

func TestRESPScan(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	rdb := c.rdbs[0]
	var users []string
	pairs := []any{}
	for i := range 25 {
		users = append(users, fmt.Sprintf("user:%02d", i))
		pairs = append(pairs, fmt.Sprintf("user:%02d", i), "u", fmt.Sprintf("item:%02d", i), "i")
	}
	if err := rdb.MSet(ctx, pairs...).Err(); err != nil {
		t.Fatal(err)
	}
	scanAll := func(rdb *redis.Client, match string, count int64) []string {
		t.Helper()
		var keys []string
		it := rdb.Scan(ctx, 0, match, count).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		if err := it.Err(); err != nil {
			t.Fatalf("SCAN MATCH %q COUNT %d: %v", match, count, err)
		}
		return keys
	}
	// Every node, small pages over a pool of connections: cursors are
	// shared by the node's connections.
	for i, r := range c.rdbs {
		if got := scanAll(r, "user:*", 7); !slices.Equal(got, users) {
			t.Errorf("node %d: SCAN MATCH user:* = %v; want %v", i+1, got, users)
		}
	}
	if got := scanAll(rdb, "", 0); len(got) != 50 {
		t.Errorf("SCAN without MATCH returned %d keys; want 50", len(got))
	}
	want := []string{"item:05", "item:15", "user:05", "user:15"}
	if got := scanAll(rdb, "*5", 4); !slices.Equal(got, want) {
		t.Errorf("SCAN MATCH *5 = %v; want %v", got, want)
	}
	if got := scanAll(rdb, "user:1?", 100); !slices.Equal(got, users[10:20]) {
		t.Errorf("SCAN MATCH user:1? = %v; want %v", got, users[10:20])
	}
	runSteps(t, rdb, []step{
		{args: []any{"SCAN", "0", "MATCH", "user:0*", "COUNT", "1000"}, want: []any{"0", toAny(users[:10])}},
		{args: []any{"SCAN", "0", "TYPE", "hash", "COUNT", "100"}, want: []any{"0", []any{}}},
		{args: []any{"SCAN", "12345"}, wantErr: "ERR invalid cursor: unknown to this node or expired"},
		{args: []any{"SCAN", "abc"}, wantErr: "ERR invalid cursor"},
		{args: []any{"SCAN", "0", "COUNT", "0"}, wantErr: "ERR syntax error"},
		{args: []any{"SCAN", "0", "COUNT"}, wantErr: "ERR syntax error"},
		{args: []any{"SCAN", "0", "MATCH", "[ab]*"}, wantErr: "ERR MATCH patterns with [...] character classes are not supported"},
	})
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func TestRESPInfo(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	lead := c.leader()
	if err := c.rdbs[lead].Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	leaderName := fmt.Sprintf("n%d", lead+1)
	for i, rdb := range c.rdbs {
		// INFO reads the local state: followers may need a moment to apply.
		var info string
		eventually(t, fmt.Sprintf("node %d to apply the write", i+1), func() bool {
			var err error
			if info, err = rdb.Info(ctx).Result(); err != nil {
				t.Fatal(err)
			}
			return strings.Contains(info, "db0:keys=1")
		})
		for _, want := range []string{"# Server\r\n", "redis_version:", "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n",
			"# Raft\r\n", "raft_term:", "raft_leader:" + leaderName + "\r\n", "raft_commit_index:", "raft_applied_index:"} {
			if !strings.Contains(info, want) {
				t.Errorf("INFO of node %d lacks %q:\n%s", i+1, want, info)
			}
		}
		role := "follower"
		if i == lead {
			role = "leader"
			if !strings.Contains(info, "raft_peer2:name=n3,") {
				t.Errorf("INFO of the leader lacks the peers' progress:\n%s", info)
			}
		}
		if !strings.Contains(info, "raft_role:"+role+"\r\n") {
			t.Errorf("INFO of node %d: want raft_role:%s in\n%s", i+1, role, info)
		}
	}
	raftOnly, err := c.rdbs[0].Info(ctx, "raft").Result()
	if err != nil || strings.Contains(raftOnly, "# Server") || !strings.HasPrefix(raftOnly, "# Raft\r\n") {
		t.Errorf("INFO raft = %q, %v; want the raft section alone", raftOnly, err)
	}
}

// rawConn is a RESP connection without a client library, for replies
// go-redis would hide.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitTimeout))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatal(err)
	}
}

// expect reads the next len(want) bytes and compares them with want.
func (r *rawConn) expect(want string) {
	r.t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r.br, got); err != nil || string(got) != want {
		r.t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// expectClosed checks that the server closed the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	if b, err := r.br.ReadByte(); err == nil {
		rest, _ := r.br.Peek(r.br.Buffered())
		r.t.Fatalf("read %q; want the connection closed", append([]byte{b}, rest...))
	}
}

func TestRESPRawProtocol(t *testing.T) {
	c := newCluster(t, nil)
	addr := c.srvs[0].RedisAddr()

	t.Run("inline commands and QUIT", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("PING\r\nSET a 1\r\nGET a\r\nQUIT\r\nPING\r\n")
		r.expect("+PONG\r\n+OK\r\n$1\r\n1\r\n+OK\r\n")
		r.expectClosed()
	})
	t.Run("HELLO 2", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("HELLO 2 SETNAME me\r\nCLIENT GETNAME\r\n")
		r.expect("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:")
		r.br.ReadString('\n')
		r.expect("$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n$2\r\nme\r\n")
	})
	t.Run("protocol error", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("*1\r\n$x\r\n")
		r.expect("-ERR Protocol error: invalid bulk length\r\n")
		r.expectClosed()
	})
	t.Run("request too large", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", MaxRESPRequest+1))
		chunk := strings.Repeat("x", 1<<20)
		// The server may close the connection before it has read it all.
		go func() {
			for range MaxRESPRequest>>20 + 2 {
				if _, err := io.WriteString(r.nc, chunk); err != nil {
					return
				}
			}
		}()
		r.expect(fmt.Sprintf("-ERR Protocol error: request exceeds %d bytes\r\n", MaxRESPRequest))
		r.expectClosed()
	})
}

func TestRESPLimits(t *testing.T) {
	c := newCluster(t, slowWrites)
	ctx := testContext(t)
	rdb := c.rdbs[1]
	big := strings.Repeat("v", kv.MaxValueSize+1)
	bigKey := strings.Repeat("k", kv.MaxKeySize+1)
	runSteps(t, rdb, []step{
		{args: []any{"SET", "k", big}, wantErr: kv.ErrValueTooLarge.Error()},
		{args: []any{"MSET", "a", "1", "k", big}, wantErr: kv.ErrValueTooLarge.Error()},
		{args: []any{"CAS", "k", "x", big}, wantErr: kv.ErrValueTooLarge.Error()},
		{args: []any{"SET", bigKey, "v"}, wantErr: kv.ErrKeyTooLarge.Error()},
		{args: []any{"GET", bigKey}, wantErr: kv.ErrKeyTooLarge.Error()},
		{args: []any{"EXISTS", "a", bigKey}, wantErr: kv.ErrKeyTooLarge.Error()},
		{args: []any{"SET", "k", big[:1<<20]}, want: "OK"},
		{args: []any{"STRLEN", "k"}, want: int64(1 << 20)},
		{args: []any{"MGET", "a"}, want: []any{nil}}, // the refused MSET wrote nothing
	})
	if testing.Short() {
		return // 8 MiB through raft takes seconds under the race detector
	}
	// APPEND past the limit fails and changes nothing.
	if err := rdb.Set(ctx, "k", big[:kv.MaxValueSize], 0).Err(); err != nil {
		t.Fatal(err)
	}
	runSteps(t, rdb, []step{
		{args: []any{"APPEND", "k", "x"}, wantErr: kv.ErrValueTooLarge.Error()},
		{args: []any{"STRLEN", "k"}, want: int64(kv.MaxValueSize)},
	})
}

// TestRESPPipeline checks that a pipeline's replies come in order and that
// each command sees the effect of those before it, whatever stages the
// server cut the pipeline into.
func TestRESPPipeline(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	rdb := c.rdbs[c.followers(c.leader())[0]]
	pipe := rdb.Pipeline()
	var sets []*redis.StatusCmd
	var reads []*redis.StringCmd
	for i := range 200 {
		sets = append(sets, pipe.Set(ctx, fmt.Sprintf("p%03d", i), i, 0))
	}
	for i := range 200 {
		reads = append(reads, pipe.Get(ctx, fmt.Sprintf("p%03d", i)))
	}
	var incrs []*redis.IntCmd
	for range 20 {
		incrs = append(incrs, pipe.Incr(ctx, "counter"))
	}
	set := pipe.Set(ctx, "x", "1", 0)
	get := pipe.Get(ctx, "x")
	appendx := pipe.Append(ctx, "x", "2")
	get2 := pipe.Get(ctx, "x")
	bad := pipe.Do(ctx, "NOPE")
	del := pipe.Del(ctx, "x", "p000")
	exists := pipe.Exists(ctx, "x", "p000", "p001")
	if _, err := pipe.Exec(ctx); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("pipeline: %v; want the unknown command's error", err)
	}
	for i, s := range sets {
		if s.Err() != nil {
			t.Fatalf("SET %d: %v", i, s.Err())
		}
	}
	for i, r := range reads {
		if v, err := r.Result(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("GET p%03d = %q, %v; want %d", i, v, err, i)
		}
	}
	for i, r := range incrs {
		if v, err := r.Result(); err != nil || v != int64(i+1) {
			t.Fatalf("INCR #%d = %d, %v; want %d", i+1, v, err, i+1)
		}
	}
	if set.Err() != nil || get.Val() != "1" || appendx.Val() != 2 || get2.Val() != "12" || bad.Err() == nil || del.Val() != 2 || exists.Val() != 1 {
		t.Fatalf("SET %v, GET %q, APPEND %d, GET %q, NOPE %v, DEL %d, EXISTS %d", set.Err(), get.Val(), appendx.Val(), get2.Val(), bad.Err(), del.Val(), exists.Val())
	}
}

// TestRESPConcurrentIncr has many clients increment one counter through
// every node at once: each increment is applied exactly once, and all
// of them are visible from every node afterwards.
func TestRESPConcurrentIncr(t *testing.T) {
	c := newCluster(t, nil)
	ctx := testContext(t)
	const clients, each = 48, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		rdb := c.rdbs[i%len(c.rdbs)]
		wg.Go(func() {
			for range each {
				if err := rdb.Incr(ctx, "counter").Err(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, rdb := range c.rdbs {
		if v, err := rdb.Get(ctx, "counter").Int(); err != nil || v != clients*each {
			t.Fatalf("counter on node %d = %d, %v; want %d", i+1, v, err, clients*each)
		}
	}
}

// TestRESPNoLeader stops two nodes: the survivor cannot learn a leader, so
// linearizable commands fail with TRYAGAIN after the bounded wait, while a
// READONLY connection still reads its local state.
func TestRESPNoLeader(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })
	ctx := testContext(t)
	if err := c.rdbs[0].Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.leader()
	// Node 3 has applied the write once its linearizable read sees it.
	if v, err := c.rdbs[2].Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET k from node 3 = %q, %v", v, err)
	}
	c.stop(0)
	c.stop(1)
	eventually(t, "node 3 to lose its leader", func() bool { return c.nodes[2].Status().Lead == 0 })

	rdb := c.rdbs[2]
	runSteps(t, rdb, []step{
		{args: []any{"SET", "k", "w"}, wantErr: "TRYAGAIN no leader within 200ms: the write was not applied"},
		{args: []any{"GET", "k"}, wantErr: "TRYAGAIN no leader within 200ms: could not confirm a linearizable read, nothing was changed"},
		{args: []any{"PING"}, want: "PONG"},
	})
	conn := rdb.Conn()
	defer conn.Close()
	if err := conn.ReadOnly(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := conn.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("READONLY GET k = %q, %v; want the local value", v, err)
	}
	if err := conn.ReadWrite(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Fatalf("GET after READWRITE: %v; want TRYAGAIN", err)
	}
}

// TestRESPLeaderFailover stops the leader while clients write through the
// other nodes: writes resume under the new leader, and every acknowledged
// write is readable afterwards from both survivors.
func TestRESPLeaderFailover(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.Timeout = 5 * time.Second })
	ctx := testContext(t)
	lead := c.leader()
	fs := c.followers(lead)
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		rdb := c.rdbs[fs[w%2]]
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				if err := rdb.Set(ctx, key, "x", 0).Err(); err != nil {
					if !strings.HasPrefix(err.Error(), "TRYAGAIN") {
						t.Errorf("SET %s: %v", key, err)
						return
					}
					continue
				}
				mu.Lock()
				acked[key] = true
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	eventually(t, "writes before the failover", func() bool { return count() >= 50 })
	c.stop(lead)
	before := count()
	eventually(t, "writes after the failover", func() bool { return count() >= before+50 })
	close(stop)
	wg.Wait()
	for _, i := range fs {
		for key := range acked {
			if err := c.rdbs[i].Get(ctx, key).Err(); err != nil {
				t.Fatalf("acknowledged %s missing on node %d: %v", key, i+1, err)
			}
		}
	}
}

func TestRESPMaxClients(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.MaxClients = 2 })
	addr := c.srvs[0].RedisAddr()
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	a.send("PING\r\n")
	a.expect("+PONG\r\n")
	b.send("PING\r\n")
	b.expect("+PONG\r\n")
	third := dialRaw(t, addr)
	third.expect("-ERR max number of clients reached\r\n")
	third.expectClosed()
	a.nc.Close()
	eventually(t, "a slot to free up", func() bool { return c.srvs[0].resp.clients() < 2 })
	d := dialRaw(t, addr)
	d.send("PING\r\n")
	d.expect("+PONG\r\n")
}

// TestRESPRestartCatchUp restarts a node that missed more writes than the
// leader keeps in its log: it catches up from a snapshot of the kv store
// (through StateMachine.Snapshot and Restore) and serves them all.
func TestRESPRestartCatchUp(t *testing.T) {
	c := newClusterNodes(t, func(cfg *node.Config) {
		cfg.SnapshotEntries = 200
		cfg.CatchUpEntries = 20
	}, nil)
	ctx := testContext(t)
	lead := c.leader()
	down := c.followers(lead)[0]
	c.stop(down)
	pipe := c.rdbs[lead].Pipeline()
	for i := range 500 {
		pipe.Set(ctx, fmt.Sprintf("k%03d", i), i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	c.start(down)
	for i := range 500 {
		if v, err := c.rdbs[down].Get(ctx, fmt.Sprintf("k%03d", i)).Int(); err != nil || v != i {
			t.Fatalf("k%03d on the restarted node = %d, %v; want %d", i, v, err, i)
		}
	}
	if n, err := c.rdbs[down].DBSize(ctx).Result(); err != nil || n != 500 {
		t.Fatalf("DBSIZE on the restarted node = %d, %v; want 500", n, err)
	}
}

// TestStageEnd checks how pipelines are cut into stages, and that every
// stage holds at least one command whatever the pipeline.
func TestStageEnd(t *testing.T) {
	r := newRESPServer(nil, nil)
	cmd := func(args ...string) respCall {
		var call respCall
		b := make([][]byte, len(args))
		for i, a := range args {
			b[i] = []byte(a)
		}
		r.prepare(&call, b)
		return call
	}
	for _, tc := range []struct {
		name  string
		calls []respCall
		ends  []int
	}{
		{"reads share a stage", []respCall{cmd("GET", "a"), cmd("MGET", "a", "b"), cmd("DBSIZE"), cmd("SET", "a", "1")}, []int{3, 4}},
		{"writes to distinct keys share a stage", []respCall{cmd("SET", "a", "1"), cmd("INCR", "b"), cmd("MSET", "c", "1", "d", "2"), cmd("DEL", "a")}, []int{3, 4}},
		{"a command's own repeated keys", []respCall{cmd("MSET", "k", "1", "k", "2", "k", "3")}, []int{1}},
		{"repeated keys after the first", []respCall{cmd("SET", "x", "1"), cmd("MSET", "k", "1", "k", "2")}, []int{1, 2}},
		{"local commands alone", []respCall{cmd("PING"), cmd("PING"), cmd("GET", "a")}, []int{1, 2, 3}},
		{"refused commands join any stage", []respCall{cmd("NOPE"), cmd("GET", "a"), cmd("GET"), cmd("GET", "b"), cmd("SET", "a")}, []int{5}},
		{"only refused commands", []respCall{cmd("NOPE"), cmd("GET")}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ends []int
			for i := 0; i < len(tc.calls); {
				j := stageEnd(tc.calls, i)
				if j <= i {
					t.Fatalf("stage at %d ends at %d: no progress", i, j)
				}
				ends = append(ends, j)
				i = j
			}
			if !slices.Equal(ends, tc.ends) {
				t.Fatalf("stages end at %v; want %v", ends, tc.ends)
			}
		})
	}
}

// writeSizes records the size of every write to a connection.
type writeSizes struct{ sizes []int }

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return len(p), nil
}

// TestRESPPipelineRepliesAreFlushed: a pipeline of short requests for a
// large value must not buffer every reply before writing any.
func TestRESPPipelineRepliesAreFlushed(t *testing.T) {
	s, _ := newFakeServer(t)
	big := bytes.Repeat([]byte("v"), respFlushBytes/4)
	if res, err := s.write(testContext(t), &kv.Command{Op: kv.OpSet, Key: []byte("big"), Value: big}); err != nil || res.Err != nil {
		t.Fatalf("SET big = %+v, %v", res, err)
	}
	const gets = 64
	cmds := make([]redcon.Command, gets)
	for i := range cmds {
		cmds[i] = redcon.Command{Args: [][]byte{[]byte("GET"), []byte("big")}}
	}
	var w writeSizes
	c := &respConn{wr: redcon.NewWriter(&w)}
	r := newRESPServer(s, nil)
	r.execute(c, cmds)
	if err := c.wr.Flush(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range w.sizes {
		total += n
		if n > respFlushBytes+len(big)+64 {
			t.Errorf("one write of %d bytes; want at most about %d", n, respFlushBytes+len(big))
		}
	}
	if total < gets*len(big) {
		t.Fatalf("wrote %d bytes; want the %d replies of %d bytes", total, gets, len(big))
	}
}
