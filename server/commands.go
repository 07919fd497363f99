package server

import (
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/match"
	"github.com/tidwall/redcon"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
)

// respCommand is one entry of the RESP command table. A kv command has
// parse (arguments to call.kc) and reply (call.res to RESP); any other
// command has run, which writes its reply or returns an error.
type respCommand struct {
	name  string
	arity int // Redis' convention: n exactly n arguments (the name included), -n at least n
	flags []string
	// firstKey, lastKey and step locate the keys in the arguments, for
	// COMMAND (lastKey -1: to the end).
	firstKey, lastKey, step int

	parse func(s *Server, call *respCall) error
	reply func(s *Server, w *redcon.Writer, call *respCall)
	run   func(s *Server, c *respConn, call *respCall) error
}

// respCommands returns the command table, by lower-case name.
func respCommands() map[string]*respCommand {
	cmds := []*respCommand{
		{name: "get", arity: 2, flags: ro, firstKey: 1, lastKey: 1, step: 1, parse: keyOnly(kv.OpGet), reply: replyValue},
		{name: "set", arity: -3, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseSet, reply: replySet},
		{name: "del", arity: -2, flags: rw, firstKey: 1, lastKey: -1, step: 1, parse: keyList(kv.OpDel), reply: replyInt},
		{name: "exists", arity: -2, flags: ro, firstKey: 1, lastKey: -1, step: 1, parse: keyList(kv.OpExists), reply: replyInt},
		{name: "append", arity: 3, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseAppend, reply: replyInt},
		{name: "incr", arity: 2, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseIncr(1), reply: replyInt},
		{name: "decr", arity: 2, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseIncr(-1), reply: replyInt},
		{name: "incrby", arity: 3, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseIncr(0), reply: replyInt},
		{name: "decrby", arity: 3, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseDecrBy, reply: replyInt},
		{name: "mget", arity: -2, flags: ro, firstKey: 1, lastKey: -1, step: 1, parse: keyList(kv.OpMGet), reply: replyValues},
		{name: "mset", arity: -3, flags: rw, firstKey: 1, lastKey: -1, step: 2, parse: parseMSet, reply: replyOK},
		{name: "strlen", arity: 2, flags: ro, firstKey: 1, lastKey: 1, step: 1, parse: keyOnly(kv.OpStrLen), reply: replyInt},
		{name: "dbsize", arity: 1, flags: ro, parse: parseDBSize, reply: replyInt},
		{name: "cas", arity: 4, flags: rw, firstKey: 1, lastKey: 1, step: 1, parse: parseCAS, reply: replyInt},
		{name: "scan", arity: -2, flags: ro, parse: parseScan, reply: replyScan},

		{name: "ping", arity: -1, flags: fast, run: runPing},
		{name: "echo", arity: 2, flags: fast, run: runEcho},
		{name: "info", arity: -1, flags: loading, run: runInfo},
		{name: "command", arity: -1, flags: loading, run: runCommand},
		{name: "config", arity: -2, flags: admin, run: runConfig},
		{name: "select", arity: 2, flags: fast, run: runSelect},
		{name: "client", arity: -2, flags: admin, run: runClient},
		{name: "hello", arity: -1, flags: fast, run: runHello},
		{name: "quit", arity: -1, flags: fast, run: runQuit},
		{name: "readonly", arity: 1, flags: fast, run: runReadOnly(true)},
		{name: "readwrite", arity: 1, flags: fast, run: runReadOnly(false)},
	}
	m := make(map[string]*respCommand, len(cmds))
	for _, c := range cmds {
		m[c.name] = c
	}
	return m
}

// Command flags, as COMMAND reports them.
var (
	ro      = []string{"readonly", "fast"}
	rw      = []string{"write", "denyoom"}
	fast    = []string{"fast"}
	loading = []string{"loading", "stale"}
	admin   = []string{"admin", "noscript", "loading", "stale"}
)

func unknownCommand(args [][]byte) error {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		fmt.Fprintf(&b, "'%s' ", truncate(a, 128-b.Len()))
	}
	return respError(fmt.Sprintf("ERR unknown command '%s', with args beginning with: %s", truncate(args[0], 128), b.String()))
}

func wrongArity(name string) error {
	return respError(fmt.Sprintf("ERR wrong number of arguments for '%s' command", name))
}

func truncate(b []byte, n int) []byte { return b[:min(len(b), n)] }

var errSyntax error = kv.ErrSyntax

// Parsers of kv commands.

func keyOnly(op kv.Op) func(*Server, *respCall) error {
	return func(_ *Server, call *respCall) error {
		call.kc = kv.Command{Op: op, Key: call.args[1]}
		return nil
	}
}

func keyList(op kv.Op) func(*Server, *respCall) error {
	return func(_ *Server, call *respCall) error {
		call.kc = kv.Command{Op: op, Keys: call.args[1:]}
		return nil
	}
}

func parseSet(_ *Server, call *respCall) error {
	call.kc = kv.Command{Op: kv.OpSet, Key: call.args[1], Value: call.args[2]}
	for _, opt := range call.args[3:] {
		switch strings.ToLower(string(opt)) {
		case "nx":
			call.kc.NX = true
		case "xx":
			call.kc.XX = true
		case "get":
			call.kc.GetOld = true
		case "ex", "px", "exat", "pxat", "keepttl":
			return respError("ERR expirations are not supported: raftkv keys never expire")
		default:
			return errSyntax
		}
	}
	if call.kc.NX && call.kc.XX {
		return errSyntax
	}
	return nil
}

func parseAppend(_ *Server, call *respCall) error {
	call.kc = kv.Command{Op: kv.OpAppend, Key: call.args[1], Value: call.args[2]}
	return nil
}

// parseIncr parses INCR and DECR (delta ±1) and INCRBY (delta 0: from the
// argument).
func parseIncr(delta int64) func(*Server, *respCall) error {
	return func(_ *Server, call *respCall) error {
		d := delta
		if d == 0 {
			var err error
			if d, err = kv.ParseInt(call.args[2]); err != nil {
				return err
			}
		}
		call.kc = kv.Command{Op: kv.OpIncrBy, Key: call.args[1], Delta: d}
		return nil
	}
}

func parseDecrBy(_ *Server, call *respCall) error {
	d, err := kv.ParseInt(call.args[2])
	if err != nil {
		return err
	}
	if d == math.MinInt64 {
		return respError("ERR decrement would overflow")
	}
	call.kc = kv.Command{Op: kv.OpIncrBy, Key: call.args[1], Delta: -d}
	return nil
}

func parseMSet(_ *Server, call *respCall) error {
	if len(call.args)%2 != 1 {
		return wrongArity("mset")
	}
	n := len(call.args) / 2
	call.kc = kv.Command{Op: kv.OpMSet, Keys: make([][]byte, 0, n), Values: make([][]byte, 0, n)}
	for i := 1; i < len(call.args); i += 2 {
		call.kc.Keys = append(call.kc.Keys, call.args[i])
		call.kc.Values = append(call.kc.Values, call.args[i+1])
	}
	return nil
}

func parseDBSize(_ *Server, call *respCall) error {
	call.kc = kv.Command{Op: kv.OpCount}
	return nil
}

func parseCAS(_ *Server, call *respCall) error {
	call.kc = kv.Command{Op: kv.OpCAS, Key: call.args[1], Expected: call.args[2], Value: call.args[3]}
	return nil
}

// Replies of kv commands.

func replyValue(_ *Server, w *redcon.Writer, call *respCall) { writeValue(w, call.res.Value) }

func writeValue(w *redcon.Writer, v kv.Value) {
	if v.Found {
		w.WriteBulk(v.Data)
	} else {
		w.WriteNull()
	}
}

func replyInt(_ *Server, w *redcon.Writer, call *respCall) { w.WriteInt64(call.res.Int) }

func replyOK(_ *Server, w *redcon.Writer, _ *respCall) { w.WriteString("OK") }

func replySet(_ *Server, w *redcon.Writer, call *respCall) {
	switch {
	case call.kc.GetOld:
		writeValue(w, call.res.Value)
	case call.res.Int == 1:
		w.WriteString("OK")
	default:
		w.WriteNull() // NX or XX kept it from writing
	}
}

func replyValues(_ *Server, w *redcon.Writer, call *respCall) {
	w.WriteArray(len(call.res.Values))
	for _, v := range call.res.Values {
		writeValue(w, v)
	}
}

// scanArgs are SCAN's options beyond what kv's scan takes.
type scanArgs struct {
	pattern string // MATCH pattern, "" for none
	filter  bool   // keys must be matched against pattern
	none    bool   // TYPE other than string: no key qualifies
}

// parseScan maps Redis' numeric cursor onto kv's key cursor through the
// server's cursor table (see cursorTable).
func parseScan(s *Server, call *respCall) error {
	call.kc = kv.Command{Op: kv.OpScan}
	sa := &scanArgs{}
	call.scan = sa
	if cur := string(call.args[1]); cur != "0" {
		id, err := strconv.ParseUint(cur, 10, 64)
		if err != nil {
			return respError("ERR invalid cursor")
		}
		start, ok := s.cursors.get(id)
		if !ok {
			return respError("ERR invalid cursor: unknown to this node or expired")
		}
		call.kc.Key = start
	}
	opts := call.args[2:]
	for i := 0; i < len(opts); i += 2 {
		if i+1 == len(opts) {
			return errSyntax
		}
		val := opts[i+1]
		switch strings.ToLower(string(opts[i])) {
		case "match":
			prefix, exact, err := globPrefix(string(val))
			if err != nil {
				return err
			}
			sa.pattern, sa.filter = string(val), !exact
			call.kc.Prefix = []byte(prefix)
		case "count":
			n, err := kv.ParseInt(val)
			if err != nil {
				return err
			}
			if n < 1 {
				return errSyntax
			}
			call.kc.Limit = int(min(n, kv.MaxScanLimit))
		case "type":
			sa.none = !strings.EqualFold(string(val), "string")
		default:
			return errSyntax
		}
	}
	return nil
}

// maxGlobSteps bounds the work of matching one key against a MATCH
// pattern, per byte of key, against patterns like "*a*a*a*a*b".
const maxGlobSteps = 64

// globPrefix returns the literal prefix of a MATCH pattern, and whether
// the pattern is exactly that prefix followed by '*' (so that no filtering
// is needed). '*', '?' and '\' escapes are supported; character classes
// are refused rather than matched wrongly.
func globPrefix(pattern string) (prefix string, exact bool, err error) {
	if strings.ContainsRune(pattern, '[') {
		return "", false, respError("ERR MATCH patterns with [...] character classes are not supported")
	}
	i := strings.IndexAny(pattern, `*?\`)
	if i < 0 {
		return pattern, false, nil
	}
	return pattern[:i], pattern[i:] == "*", nil
}

func replyScan(s *Server, w *redcon.Writer, call *respCall) {
	cursor := "0"
	if len(call.res.Cursor) > 0 {
		cursor = strconv.FormatUint(s.cursors.put(call.res.Cursor), 10)
	}
	keys := call.res.Keys
	if sa := call.scan; sa.none || sa.filter {
		keys = slices.DeleteFunc(slices.Clone(keys), func(k []byte) bool {
			if sa.none {
				return true
			}
			ok, _ := match.MatchLimit(string(k), sa.pattern, maxGlobSteps)
			return !ok
		})
	}
	w.WriteArray(2)
	w.WriteBulkString(cursor)
	w.WriteArray(len(keys))
	for _, k := range keys {
		w.WriteBulk(k)
	}
}

// Commands that do not touch the store, or only read it for INFO.

func runPing(_ *Server, c *respConn, call *respCall) error {
	switch len(call.args) {
	case 1:
		c.wr.WriteString("PONG")
	case 2:
		c.wr.WriteBulk(call.args[1])
	default:
		return wrongArity("ping")
	}
	return nil
}

func runEcho(_ *Server, c *respConn, call *respCall) error {
	c.wr.WriteBulk(call.args[1])
	return nil
}

func runSelect(_ *Server, c *respConn, call *respCall) error {
	n, err := kv.ParseInt(call.args[1])
	switch {
	case err != nil:
		return err
	case n != 0:
		return respError("ERR DB index is out of range")
	}
	c.wr.WriteString("OK")
	return nil
}

func runQuit(_ *Server, c *respConn, _ *respCall) error {
	c.wr.WriteString("OK")
	c.quit = true
	return nil
}

func runReadOnly(on bool) func(*Server, *respConn, *respCall) error {
	return func(_ *Server, c *respConn, _ *respCall) error {
		c.readonly = on
		c.wr.WriteString("OK")
		return nil
	}
}

func runClient(_ *Server, c *respConn, call *respCall) error {
	sub := strings.ToLower(string(call.args[1]))
	arity := map[string]int{"setname": 3, "getname": 2, "id": 2, "setinfo": 4}
	if n, ok := arity[sub]; !ok {
		return respError(fmt.Sprintf("ERR unknown subcommand '%s'. Try CLIENT HELP.", truncate(call.args[1], 128)))
	} else if len(call.args) != n {
		return wrongArity("client|" + sub)
	}
	switch sub {
	case "setname":
		if err := checkClientName(call.args[2]); err != nil {
			return err
		}
		c.name = string(call.args[2])
		c.wr.WriteString("OK")
	case "getname":
		if c.name == "" {
			c.wr.WriteNull()
		} else {
			c.wr.WriteBulkString(c.name)
		}
	case "id":
		c.wr.WriteUint64(c.id)
	case "setinfo":
		c.wr.WriteString("OK") // library name and version: accepted, not kept
	}
	return nil
}

func checkClientName(name []byte) error {
	for _, b := range name {
		if b < '!' || b > '~' {
			return respError("ERR Client names cannot contain spaces, newlines or special characters.")
		}
	}
	return nil
}

// runHello answers HELLO for RESP2 only: clients that ask for RESP3 (such
// as go-redis) get NOPROTO and fall back to RESP2.
func runHello(s *Server, c *respConn, call *respCall) error {
	args := call.args[1:]
	if len(args) > 0 {
		if v := string(args[0]); v != "2" {
			if _, err := strconv.Atoi(v); err != nil {
				return respError("ERR Protocol version is not an integer or out of range")
			}
			return respError("NOPROTO sorry, this protocol version is not supported")
		}
		args = args[1:]
	}
	for len(args) > 0 {
		switch opt := strings.ToLower(string(args[0])); {
		case opt == "setname" && len(args) >= 2:
			if err := checkClientName(args[1]); err != nil {
				return err
			}
			c.name = string(args[1])
			args = args[2:]
		case opt == "auth":
			return respError("ERR AUTH is not supported")
		default:
			return respError(fmt.Sprintf("ERR Syntax error in HELLO option '%s'", truncate(args[0], 128)))
		}
	}
	c.wr.WriteArray(14)
	c.wr.WriteBulkString("server")
	c.wr.WriteBulkString("redis")
	c.wr.WriteBulkString("version")
	c.wr.WriteBulkString(redisVersion)
	c.wr.WriteBulkString("proto")
	c.wr.WriteInt(2)
	c.wr.WriteBulkString("id")
	c.wr.WriteUint64(c.id)
	c.wr.WriteBulkString("mode")
	c.wr.WriteBulkString("standalone")
	c.wr.WriteBulkString("role")
	c.wr.WriteBulkString("master") // every node takes writes
	c.wr.WriteBulkString("modules")
	c.wr.WriteArray(0)
	return nil
}

// configParams are what CONFIG GET reports, so that tools that read the
// server's configuration (redis-benchmark reads save and appendonly) get
// sensible answers. raftkv fsyncs every log batch before it answers, the
// closest Redis equivalent being appendonly with appendfsync always.
func configParams(s *Server) [][2]string {
	return [][2]string{
		{"save", ""},
		{"appendonly", "yes"},
		{"appendfsync", "always"},
		{"databases", "1"},
		{"maxclients", strconv.Itoa(s.cfg.MaxClients)},
		{"proto-max-bulk-len", strconv.Itoa(kv.MaxValueSize)},
	}
}

func runConfig(s *Server, c *respConn, call *respCall) error {
	if !strings.EqualFold(string(call.args[1]), "get") {
		return respError(fmt.Sprintf("ERR unknown subcommand '%s'. Try CONFIG HELP.", truncate(call.args[1], 128)))
	}
	if len(call.args) < 3 {
		return wrongArity("config|get")
	}
	var out []string
	for _, p := range configParams(s) {
		for _, pat := range call.args[2:] {
			if ok, _ := match.MatchLimit(p[0], strings.ToLower(string(pat)), maxGlobSteps); ok {
				out = append(out, p[0], p[1])
				break
			}
		}
	}
	c.wr.WriteArray(len(out))
	for _, v := range out {
		c.wr.WriteBulkString(v)
	}
	return nil
}

// runCommand answers COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND LIST and
// COMMAND DOCS (empty: clients only use it for hints).
func runCommand(s *Server, c *respConn, call *respCall) error {
	table := s.resp.commands
	if len(call.args) == 1 {
		c.wr.WriteArray(len(table))
		for _, name := range sortedNames(table) {
			writeCommandInfo(c.wr, table[name])
		}
		return nil
	}
	switch sub := strings.ToLower(string(call.args[1])); sub {
	case "count":
		c.wr.WriteInt(len(table))
	case "list":
		names := sortedNames(table)
		c.wr.WriteArray(len(names))
		for _, n := range names {
			c.wr.WriteBulkString(n)
		}
	case "info":
		c.wr.WriteArray(len(call.args) - 2)
		for _, a := range call.args[2:] {
			if cmd := table[strings.ToLower(string(a))]; cmd != nil {
				writeCommandInfo(c.wr, cmd)
			} else {
				c.wr.WriteNull()
			}
		}
	case "docs":
		c.wr.WriteArray(0)
	default:
		return respError(fmt.Sprintf("ERR unknown subcommand '%s'. Try COMMAND HELP.", truncate(call.args[1], 128)))
	}
	return nil
}

func sortedNames(table map[string]*respCommand) []string {
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// writeCommandInfo writes a command's COMMAND entry in Redis 7's layout:
// name, arity, flags, first key, last key, step, ACL categories, tips, key
// specs, subcommands.
func writeCommandInfo(w *redcon.Writer, cmd *respCommand) {
	w.WriteArray(10)
	w.WriteBulkString(cmd.name)
	w.WriteInt(cmd.arity)
	w.WriteArray(len(cmd.flags))
	for _, f := range cmd.flags {
		w.WriteString(f)
	}
	w.WriteInt(cmd.firstKey)
	w.WriteInt(cmd.lastKey)
	w.WriteInt(cmd.step)
	for range 4 {
		w.WriteArray(0)
	}
}

// runInfo answers INFO [section ...] with the server, clients, keyspace and
// raft sections ("all", "everything" and "default" name them all).
func runInfo(s *Server, c *respConn, call *respCall) error {
	want := func(section string) bool {
		if len(call.args) == 1 {
			return true
		}
		for _, a := range call.args[1:] {
			switch strings.ToLower(string(a)) {
			case section, "all", "everything", "default":
				return true
			}
		}
		return false
	}
	var b strings.Builder
	st := s.node.Status()
	section := func(name string, lines func()) {
		if !want(strings.ToLower(name)) {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(&b, "# %s\r\n", name)
		lines()
	}
	line := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	section("Server", func() {
		line("redis_version", redisVersion)
		line("redis_mode", "standalone")
		line("raftkv_node", st.Name(st.ID))
		line("process_id", os.Getpid())
		line("tcp_port", portOf(s.RedisAddr()))
		up := int64(time.Since(s.started).Seconds())
		line("uptime_in_seconds", up)
		line("uptime_in_days", up/86400)
	})
	section("Clients", func() {
		line("connected_clients", s.resp.clients())
		line("maxclients", s.cfg.MaxClients)
	})
	section("Keyspace", func() {
		if n := s.store.Read(&kv.Command{Op: kv.OpCount}).Int; n > 0 {
			line("db0", fmt.Sprintf("keys=%d,expires=0,avg_ttl=0", n))
		}
	})
	section("Raft", func() {
		line("raft_node", st.Name(st.ID))
		line("raft_node_id", hexID(st.ID))
		line("raft_cluster_id", hexID(st.ClusterID))
		line("raft_role", st.Role)
		line("raft_term", st.Term)
		line("raft_leader", st.Name(st.Lead))
		line("raft_vote", st.Name(st.Vote))
		line("raft_commit_index", st.Commit)
		line("raft_applied_index", st.Applied)
		line("raft_apply_lag", applyLag(st))
		line("raft_members", len(st.Members))
		if st.Role == raft.Leader {
			for i, p := range peerProgress(st) {
				line(fmt.Sprintf("raft_peer%d", i), fmt.Sprintf("name=%s,match=%d,next=%d,lag=%d,state=%s,active=%d",
					p.Name, p.Match, p.Next, p.Lag, p.State, boolInt(p.RecentActive)))
			}
		}
	})
	c.wr.WriteBulkString(b.String())
	return nil
}

// redisVersion is the Redis version raftkv presents itself as: clients
// check it to decide which commands they may send.
const redisVersion = "7.2.0"

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
