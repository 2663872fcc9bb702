package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The python and node peers are scripts that run every case as a client of
// our server and print one JSON line per case with what they observed; the
// assertions are made here, against the same expectations as for the Go peers.

const scriptTimeout = 6 * time.Minute

// scriptResult is one line of a peer script's output.
type scriptResult struct {
	Case  string `json:"case"`
	Error string `json:"error"`
	// message cases
	SentType   string `json:"sent_type"`
	SentLen    int    `json:"sent_len"`
	SentSHA256 string `json:"sent_sha256"`
	RecvType   string `json:"recv_type"`
	RecvLen    int    `json:"recv_len"`
	RecvSHA256 string `json:"recv_sha256"`
	// ping-peer: the payload of the peer's ping and of the pong it got back;
	// after: what the echo of "after-ping" was
	PingHex string `json:"ping_hex"`
	PongHex string `json:"pong_hex"`
	After   string `json:"after"`
	// ping-ours: the text message received after "#cmd ping"
	Reply string `json:"reply"`
	// close cases: the close code and reason the peer received
	// (close-peer: our echo; close-ours: our server's close frame)
	Code   *int   `json:"code"`
	Reason string `json:"reason"`
}

// requirePeer skips the test when a peer is not installed, except under CI=true.
func requirePeer(t *testing.T, missing string, install string) {
	t.Helper()
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a missing peer is a failure; install it with %s)", missing, install)
	}
	t.Skipf("SKIP: %s; install it with %s (under CI=true this is a failure)", missing, install)
}

// runScriptPeer runs a peer script against our server, in each of its
// modes, and checks its results.
func runScriptPeer(t *testing.T, name string, argv ...string) {
	for _, m := range ourServerModes {
		t.Run(m.name, func(t *testing.T) { runScriptPeerAgainst(t, newOurServer(t, m.events), name, argv...) })
	}
}

func runScriptPeerAgainst(t *testing.T, srv *ourServer, name string, argv ...string) {
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], base)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("%s: %s ran in %v", name, strings.Join(argv, " "), time.Since(start).Round(time.Millisecond))
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) && exitErr.ExitCode() == 1 && ctx.Err() == nil {
		// Exit status 1: some cases reported an error, asserted below.
		t.Logf("%s script: %v (some cases failed)", name, runErr)
		if stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	} else if runErr != nil {
		t.Errorf("%s script: %v (ctx: %v)\nstderr:\n%s", name, runErr, ctx.Err(), stderr.String())
	} else if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", name, stderr.String())
	}

	results := map[string]scriptResult{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var r scriptResult
		if !bytes.HasPrefix(line, []byte("{")) || json.Unmarshal(line, &r) != nil || r.Case == "" {
			t.Logf("%s: %s", name, line)
			continue
		}
		results[r.Case] = r
	}

	get := func(t *testing.T, c string) scriptResult {
		t.Helper()
		r, ok := results[c]
		if !ok {
			t.Fatalf("%s printed no result for case %q", name, c)
		}
		if r.Error != "" {
			t.Errorf("%s: %s", name, r.Error)
		}
		return r
	}

	for _, comp := range compressions {
		for _, mode := range modes {
			for _, kind := range kinds {
				for _, size := range sizes {
					c := msgCase(comp, mode, kind, size)
					t.Run(c, func(t *testing.T) {
						r := get(t, c)
						if r.SentType != kind || r.SentLen != size {
							t.Errorf("the peer sent a %s message of %d bytes, want %s %d", r.SentType, r.SentLen, kind, size)
						}
						if r.RecvType != kind || r.RecvLen != size || r.RecvSHA256 != r.SentSHA256 {
							t.Errorf("echo: %s %d B sha256 %s; want %s %d B sha256 %s",
								r.RecvType, r.RecvLen, r.RecvSHA256, kind, size, r.SentSHA256)
						}
						checkWire(t, srv.wire, c, comp, mode, size, true)
					})
				}
			}
		}
	}

	t.Run("ping-peer", func(t *testing.T) {
		r := get(t, "ping-peer")
		if r.PingHex == "" || r.PongHex != r.PingHex {
			t.Errorf("peer's ping payload %q, pong payload %q: want equal and non-empty", r.PingHex, r.PongHex)
		}
		if r.After != "after-ping" {
			t.Errorf("echo after the ping: %q, want \"after-ping\"", r.After)
		}
	})
	t.Run("ping-ours", func(t *testing.T) {
		if r := get(t, "ping-ours"); r.Reply != "#ok ping" {
			t.Errorf("after our server's Ping the peer got %q, want \"#ok ping\"", r.Reply)
		}
	})

	for _, code := range closeCodes {
		c := fmt.Sprintf("close-peer-%d", code)
		t.Run(c, func(t *testing.T) {
			r := get(t, c)
			if r.Code == nil || *r.Code != code {
				t.Errorf("the peer got the echo code %v, want %d", fmtCode(r.Code), code)
			}
			if o, ok := srv.obs.wait(t, c); ok {
				checkOurCloseError(t, "our server", o.err, code, closeReason(code), true)
			}
		})
	}
	for _, code := range closeCodes {
		c := fmt.Sprintf("close-ours-%d", code)
		t.Run(c, func(t *testing.T) {
			r := get(t, c)
			if r.Code == nil || *r.Code != code || r.Reason != closeReason(code) {
				t.Errorf("the peer got close %s %q, want %d %q", fmtCode(r.Code), r.Reason, code, closeReason(code))
			}
			srv.obs.wait(t, c)
		})
	}
}

func fmtCode(c *int) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprint(*c)
}

const python = "/usr/bin/python3"

// TestPythonClient: Debian's python3-websockets (10.4) as a client of our server.
func TestPythonClient(t *testing.T) {
	missing := ""
	if out, err := exec.Command(python, "-c", "import websockets; print(websockets.__version__)").CombinedOutput(); err != nil {
		missing = fmt.Sprintf("python3-websockets is not importable by %s: %v: %s", python, err, bytes.TrimSpace(out))
	} else {
		t.Logf("python3-websockets %s", bytes.TrimSpace(out))
	}
	requirePeer(t, missing, "apt-get install python3-websockets")
	runScriptPeer(t, "python3-websockets", python, "python/client.py")
}

const node = "/usr/bin/node"

// TestNodeClient: the npm ws package as a client of our server.
func TestNodeClient(t *testing.T) {
	missing := ""
	if _, err := os.Stat(node); err != nil {
		missing = fmt.Sprintf("%s: %v", node, err)
	} else if _, err := os.Stat("node/node_modules/ws/package.json"); err != nil {
		missing = fmt.Sprintf("interop/node/node_modules/ws is not installed (%v)", err)
	}
	requirePeer(t, missing, "bash interop/setup.sh")
	runScriptPeer(t, "npm ws", node, "node/client.js")
}
