package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The JavaScript client's own tests (client/test), run by Node as part of
// the Go suite: unit_test.mjs on its own, client_test.mjs against a hub of
// this package served by httptest. ./scripts/test installs the npm "ws"
// package they need (interop/setup.sh); Node itself comes with the
// machine. Without either the tests are skipped, except when CI=true, where
// a missing tool is a failure.

// nodeTimeout bounds one run of node.
const nodeTimeout = 2 * time.Minute

// skipOrFail skips the test, or fails it in CI.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// nodeBinary returns the path of node.
func nodeBinary(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not installed: %v", err)
	}
	return node
}

// wsModules returns the node_modules directory that holds the npm ws
// package, as an absolute path.
func wsModules(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "interop", "node", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ws", "package.json")); err != nil {
		skipOrFail(t, "the npm ws package is missing (bash interop/setup.sh installs it): %v", err)
	}
	return dir
}

// runNode runs node with args in this package's directory and returns its
// output and exit error. The process is ended when nodeTimeout passes.
func runNode(t *testing.T, env []string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("node %s: %v, exit %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), cmd.ProcessState)
	return out.Bytes(), err
}

// lastJSONLine decodes the last line of out, the summary both scripts
// print.
func lastJSONLine(t *testing.T, out []byte, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err := json.Unmarshal([]byte(last), v); err != nil {
		t.Fatalf("the last line of node's output is not its JSON summary (%v): %q\n%s", err, last, out)
	}
}

// TestJSClientUnit runs duplex.js's unit tests (no server: a fake WebSocket
// plays the hub).
func TestJSClientUnit(t *testing.T) {
	out, err := runNode(t, nil, filepath.Join("client", "test", "unit_test.mjs"))
	var summary struct {
		OK     bool     `json:"ok"`
		Tests  int      `json:"tests"`
		Failed []string `json:"failed"`
		MS     int      `json:"ms"`
	}
	lastJSONLine(t, out, &summary)
	if err != nil || !summary.OK || len(summary.Failed) > 0 || summary.Tests == 0 {
		t.Fatalf("unit_test.mjs: exit %v, %d tests, failed %q:\n%s", err, summary.Tests, summary.Failed, out)
	}
	t.Logf("unit_test.mjs: %d tests passed in %d ms", summary.Tests, summary.MS)
}

// TestJSClientAgainstHub runs client_test.mjs against a real hub: two
// duplex.js clients in one room over the npm ws package, live delivery,
// presence, a cut with recovery of exactly the missed publications, a keyed
// publish sent again across a cut. The hub's own history of the room must
// then hold every publication once: the keyed one was appended once.
func TestJSClientAgainstHub(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		modules := wsModules(t)
		h, url := startHub(t, mode, Options{})
		room := "node-client-" + newClientID()[:8]
		out, err := runNode(t, []string{
			"DUPLEX_HUB_URL=" + url + "/",
			"NODE_WS_PATH=" + modules,
			"DUPLEX_TEST_ROOM=" + room,
		}, filepath.Join("client", "test", "client_test.mjs"))
		var summary struct {
			OK     bool   `json:"ok"`
			Room   string `json:"room"`
			Error  string `json:"error"`
			Checks []struct {
				Name   string          `json:"name"`
				OK     bool            `json:"ok"`
				Detail json.RawMessage `json:"detail"`
			} `json:"checks"`
			Received struct{ A, B int } `json:"received"`
			MS       int                `json:"ms"`
		}
		lastJSONLine(t, out, &summary)
		for _, c := range summary.Checks {
			t.Logf("%-5v %s %s", c.OK, c.Name, c.Detail)
		}
		if err != nil || !summary.OK || len(summary.Checks) == 0 {
			t.Fatalf("client_test.mjs: exit %v, ok %v, error %q:\n%s", err, summary.OK, summary.Error, out)
		}
		if summary.Room != room {
			t.Errorf("client_test.mjs used room %q, want %q", summary.Room, room)
		}
		t.Logf("client_test.mjs: %d checks passed in %d ms; A received %d, B %d publications",
			len(summary.Checks), summary.MS, summary.Received.A, summary.Received.B)

		// What the hub kept: every publication of the run once, offsets 1..n
		// (the memory broker numbers a room's offsets contiguously).
		hist, err := h.History(context.Background(), room, HistoryQuery{Limit: 1000})
		if err != nil {
			t.Fatalf("history of %s: %v", room, err)
		}
		seen := make(map[string]bool)
		for i, p := range hist.Publications {
			if p.Offset != uint64(i+1) {
				t.Errorf("history[%d] has offset %d, want %d", i, p.Offset, i+1)
			}
			if seen[string(p.Data)] {
				t.Errorf("history holds %s twice", p.Data)
			}
			seen[string(p.Data)] = true
		}
		if n := len(hist.Publications); n != summary.Received.A || n != summary.Received.B {
			t.Errorf("the hub kept %d publications in %s; A received %d, B %d", n, room, summary.Received.A, summary.Received.B)
		}
		// Stats counts every publish the broker accepted, a keyed one answered
		// with its first position included: more publishes than publications
		// means the keyed publish cut in flight had reached the hub and its
		// resend was deduplicated (else the cut came before the hub read it).
		t.Logf("the hub accepted %d publishes for %d publications in %s", h.Stats().Publications, len(hist.Publications), room)

		// The clients closed their connections before node exited: the hub
		// sees them go.
		deadline := time.Now().Add(10 * time.Second)
		for h.Stats().Connections != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := h.Stats().Connections; n != 0 {
			t.Errorf("%d connections still open on the hub after node exited", n)
		}
	})
}
