package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// dialChat opens /chat/connect on addr as a same-origin page would.
func dialChat(t *testing.T, ctx context.Context, addr string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/chat/connect", &websocket.DialOptions{Header: originHeader(addr)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// originHeader is the Origin that a page of the server itself sends.
func originHeader(addr string) http.Header {
	return http.Header{"Origin": {"http://" + addr}}
}

// echo sends {"text": text} and checks the reply.
func echo(t *testing.T, ctx context.Context, c *websocket.Conn, text string) {
	t.Helper()
	if err := echoOnce(ctx, c, text); err != nil {
		t.Fatal(err)
	}
}

// echoOnce is echo for a goroutine other than the test's: it returns what
// went wrong.
func echoOnce(ctx context.Context, c *websocket.Conn, text string) error {
	msg, _ := json.Marshal(map[string]string{"text": text})
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	reply, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	want, _ := json.Marshal(map[string]string{"text": "Echo: " + text})
	if string(reply.Data) != string(want) {
		return fmt.Errorf("reply = %s, want %s", reply.Data, want)
	}
	return nil
}

// wantGoingAway reads from c and expects the server's close 1001.
func wantGoingAway(t *testing.T, ctx context.Context, c *websocket.Conn) {
	t.Helper()
	_, err := c.Read(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read during shutdown: %v, want a *websocket.CloseError", err)
	}
	if ce.Code != websocket.StatusGoingAway || !ce.Remote {
		t.Errorf("close = %+v, want 1001 sent by the server", ce)
	}
}

func TestRunServesAndShutsDownGracefully(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0"}, map[string]string{"DUPLEX_LOG_LEVEL": "debug"})

	client := &http.Client{
		Timeout:       testTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + srv.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}
	resp, err = client.Get("http://" + srv.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/chat/index" {
		t.Errorf("GET / = %d to %q, want 302 to /chat/index", resp.StatusCode, resp.Header.Get("Location"))
	}

	a := dialChat(t, ctx, srv.addr)
	b := dialChat(t, ctx, srv.addr)
	echo(t, ctx, a, "from a")
	echo(t, ctx, b, "from b")

	// A client that leaves on its own is logged with its code.
	if err := b.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close b: %v", err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()
	wantGoingAway(t, ctx, a)
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v after a graceful shutdown, want nil", err)
	}

	logs := srv.logs
	if n := len(logs.linesWith("websocket opened", "remote=127.0.0.1:")); n != 2 {
		t.Errorf("%d 'websocket opened' lines, want 2:\n%s", n, logs)
	}
	if n := len(logs.linesWith("websocket closed", "code=1000", "by=peer", "duration=")); n != 1 {
		t.Errorf("%d 'websocket closed' lines with code=1000 by=peer, want 1:\n%s", n, logs)
	}
	if n := len(logs.linesWith("websocket closed", "code=1001", "by=server", "duration=")); n != 1 {
		t.Errorf("%d 'websocket closed' lines with code=1001 by=server, want 1:\n%s", n, logs)
	}
	if n := len(logs.linesWith("msg=stopped")); n != 1 {
		t.Errorf("no 'stopped' line:\n%s", logs)
	}
}

func TestRunAllowedOrigins(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0"}, map[string]string{"DUPLEX_ALLOWED_ORIGINS": "*.trusted.example"})

	c, _, err := websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{
		Header: http.Header{"Origin": {"https://app.trusted.example"}},
	})
	if err != nil {
		t.Fatalf("dial from an allowed origin: %v", err)
	}
	defer c.CloseNow()
	echo(t, ctx, c, "allowed")

	_, _, err = websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{
		Header: http.Header{"Origin": {"https://evil.example"}},
	})
	var he *websocket.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Errorf("dial from another origin: %v, want 403", err)
	}
}

func TestRunErrors(t *testing.T) {
	env := func(string) string { return "" }
	if err := run(t.Context(), []string{"-log-level", "loud"}, env, io.Discard); !errors.As(err, new(usageError)) {
		t.Errorf("run with a bad flag: %v, want a usage error", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := run(t.Context(), []string{"-addr", ln.Addr().String(), "-data-dir", t.TempDir()}, env, io.Discard); err == nil {
		t.Errorf("run on a port in use returned nil, want an error")
	}
}

// TestRunShutdownCodeAndDrain: with -shutdown-code service-restart and a
// drain, every WebSocket gets 1012, each close is logged by the server, and
// the spread of the arrivals is logged (not asserted: timing is no test).
func TestRunShutdownCodeAndDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-shutdown-code", "service-restart"},
		map[string]string{"DUPLEX_DRAIN": "400ms"})
	if len(srv.logs.linesWith("msg=listening", "shutdown_code=1012", "drain=400ms")) != 1 {
		t.Errorf("the listening line does not give the shutdown code and drain:\n%s", srv.logs)
	}
	const n = 4
	arrivals := make([]time.Time, n)
	var readers sync.WaitGroup
	for i := range n {
		c := dialChat(t, ctx, srv.addr)
		echo(t, ctx, c, "before the restart")
		readers.Go(func() {
			_, err := c.Read(ctx)
			arrivals[i] = time.Now()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusServiceRestart || !ce.Remote || ce.Reason != "service restart" {
				t.Errorf("client %d: read during shutdown: %v, want close 1012 \"service restart\" from the server", i, err)
			}
		})
	}
	start := time.Now()
	if err := srv.stop(); err != nil {
		t.Errorf("run returned %v after a graceful shutdown, want nil", err)
	}
	readers.Wait()
	after := make([]time.Duration, n)
	for i, a := range arrivals {
		after[i] = a.Sub(start).Round(time.Millisecond)
	}
	slices.Sort(after)
	t.Logf("closes arrived %v after the shutdown began (drain 400ms)", after)
	if got := len(srv.logs.linesWith("websocket closed", "code=1012", `reason="service restart"`, "by=server")); got != n {
		t.Errorf("%d 'websocket closed' lines with code=1012 by=server, want %d:\n%s", got, n, srv.logs)
	}
}
