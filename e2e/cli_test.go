package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
)

// TestCLIAndCurl drives a cluster the way a user at a shell does: raftkv
// get, put, del, status, members and transfer-leader, and plain HTTP
// requests as curl sends them.
func TestCLIAndCurl(t *testing.T) {
	needBinary(t)
	procs, _ := serveCluster(t)
	leader, _ := agreedLeader(t, procs...)
	var eps []string
	for _, p := range procs {
		eps = append(eps, p.http)
	}
	endpoints := "--endpoints=" + strings.Join(eps, ",")

	cli := func(wantCode int, args ...string) (stdout, stderr string) {
		t.Helper()
		stdout, stderr, code := runCLI(t, nil, append(args, endpoints)...)
		if code != wantCode {
			t.Fatalf("raftkv %q: exit code %d, want %d; stdout %q, stderr %q", args, code, wantCode, stdout, stderr)
		}
		if wantCode != 0 && (stdout != "" || strings.Count(stderr, "\n") != 1) {
			t.Fatalf("raftkv %q failed with stdout %q and stderr %q, want nothing and one line", args, stdout, stderr)
		}
		return stdout, stderr
	}

	if out, _ := cli(0, "put", "greeting", "hello world"); out != "OK\n" {
		t.Errorf("put: got %q, want OK", out)
	}
	if out, _ := cli(0, "get", "greeting"); out != "hello world\n" {
		t.Errorf("get: got %q, want the value and a newline", out)
	}
	out, _ := cli(0, "get", "greeting", "--output", "json")
	var got struct{ Key, Value string }
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Key != "greeting" || got.Value != "hello world" {
		t.Errorf("get --output json: got %q (%v)", out, err)
	}
	if _, stderr := cli(1, "get", "nothing-here"); !strings.Contains(stderr, "not found") {
		t.Errorf("get of a missing key: stderr %q, want it to say not found", stderr)
	}
	if out, _ := cli(0, "del", "greeting"); out != "deleted\n" {
		t.Errorf("del: got %q", out)
	}
	cli(1, "get", "greeting")
	cli(2, "get")
	cli(2, "put", "a", "b", "c")
	cli(2, "status", "--output", "yaml")

	// The environment names the endpoints as well as the flag.
	stdout, stderr, code := runCLI(t, []string{"RAFTKV_ENDPOINTS=" + procs[1].http}, "put", "env", "var")
	if code != 0 {
		t.Errorf("put with RAFTKV_ENDPOINTS: exit %d, stderr %q, stdout %q", code, stderr, stdout)
	}

	// curl -XPUT host/v1/kv/key -d value, to a follower, then curl from
	// every node.
	follower := without(procs, leader)[0]
	req, _ := http.NewRequest(http.MethodPut, "http://"+follower.http+"/v1/kv/from%20curl", strings.NewReader("raw bytes"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d sends it
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("curl -XPUT: status %s", resp.Status)
	}
	for _, p := range procs {
		resp, err := http.Get("http://" + p.http + "/v1/kv/from%20curl")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, []byte("raw bytes")) {
			t.Errorf("curl %s: %s %q, want 200 and the raw value", p.name, resp.Status, body)
		}
	}
	if out, _ := cli(0, "get", "from curl"); out != "raw bytes\n" {
		t.Errorf("get of the key curl wrote: got %q", out)
	}

	// status: a table with a row per node, the leader's match and lag in
	// every row.
	eventually(t, "status to show every node caught up", func() bool {
		out, _, code := runCLI(t, nil, "status", endpoints)
		rows := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(rows) != 4 || strings.Join(strings.Fields(rows[0]), " ") != "NAME ENDPOINT ROLE TERM LEADER COMMIT APPLIED MATCH LAG" {
			t.Fatalf("status: exit %d, table %q", code, out)
		}
		leaders := 0
		for _, row := range rows[1:] {
			f := strings.Fields(row)
			if len(f) != 9 {
				t.Fatalf("status row %q: want 9 columns", row)
			}
			if f[2] == "leader" {
				leaders++
			}
			if f[8] != "0" {
				return false // lag
			}
		}
		return leaders == 1
	})
	out, _ = cli(0, "status", "--output", "json")
	var answers []struct {
		Endpoint string
		Status   *client.Status
		Error    string
	}
	if err := json.Unmarshal([]byte(out), &answers); err != nil || len(answers) != 3 || answers[0].Status == nil {
		t.Errorf("status --output json: %q (%v)", out, err)
	}
	out, _ = cli(0, "members")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 4 || !strings.Contains(out, leader.name) {
		t.Errorf("members: %q, want a header and three rows", out)
	}

	// transfer-leader: the follower curl wrote through leads once it
	// returns.
	if out, _ := cli(0, "transfer-leader", follower.name); out != follower.name+" leads\n" {
		t.Errorf("transfer-leader %s: got %q", follower.name, out)
	}
	if now, _ := agreedLeader(t, procs...); now != follower {
		t.Errorf("after transfer-leader %s: %s leads", follower.name, now.name)
	}
	if _, stderr := cli(1, "transfer-leader", "n9"); !strings.Contains(stderr, "not a member") {
		t.Errorf("transfer-leader n9: stderr %q, want it to say not a member", stderr)
	}

	// A node that does not answer: status still shows the others, and
	// fails.
	dead := freePorts(t, 1)[0]
	start := time.Now()
	stdout, stderr, code = runCLI(t, nil, "status", "--timeout", "2s", "--endpoints", strings.Join(append(eps, dead), ","))
	if code != 1 || !strings.Contains(stdout, "unreachable") || !strings.Contains(stderr, "1 of 4") {
		t.Errorf("status with a dead endpoint: exit %d, stdout %q, stderr %q; want 1, an unreachable row, and the count", code, stdout, stderr)
	}
	t.Logf("status with a dead endpoint took %v", time.Since(start).Round(time.Millisecond))
}
