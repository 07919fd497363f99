package server

import (
	"bytes"
	"testing"

	"github.com/tidwall/redcon"
)

// FuzzRESPPipeline feeds arbitrary bytes through redcon's parser and the
// server's command preparation and staging: whatever a client sends, no
// panic, and the pipeline always advances. It runs no command.
func FuzzRESPPipeline(f *testing.F) {
	for _, seed := range []string{
		"PING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
		"SET k v NX GET\r\nGET k\r\nMSET a 1 a 2\r\nDEL a a b\r\n",
		"SCAN 0 MATCH user:* COUNT 5 TYPE string\r\nSCAN 99 COUNT -1\r\nSCAN 0 MATCH [a]\r\n",
		"INCRBY n 9223372036854775807\r\nDECRBY n -9223372036854775808\r\nCAS k a b\r\n",
		"CLIENT SETNAME x\r\nHELLO 3\r\nCONFIG GET *\r\nCOMMAND INFO get\r\nSELECT 1\r\n",
		"*1\r\n$x\r\n",
	} {
		f.Add([]byte(seed))
	}
	s := &Server{cursors: newCursorTable()}
	r := newRESPServer(s, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := redcon.NewReader(bytes.NewReader(data))
		for {
			cmds, err := rd.ReadCommands()
			if err != nil {
				return
			}
			calls := make([]respCall, len(cmds))
			for i := range cmds {
				r.prepare(&calls[i], cmds[i].Args)
				if c := &calls[i]; c.err == nil && c.cmd.parse != nil {
					if err := c.kc.Validate(); err == nil {
						c.kc.Marshal()
					}
				}
			}
			for i := 0; i < len(calls); {
				j := stageEnd(calls, i)
				if j <= i {
					t.Fatalf("stage at %d ends at %d", i, j)
				}
				i = j
			}
		}
	})
}

func FuzzRequestID(f *testing.F) {
	for _, seed := range []string{"1:1", "0:1", "18446744073709551615:2", "1:", ":", "a:b", "1:1:1", "-1:2"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		id, err := requestID(h)
		if err == nil && h != "" && (id.ClientID == 0 || id.Seq == 0) {
			t.Fatalf("requestID(%q) = %v: accepted a zero part", h, id)
		}
	})
}
