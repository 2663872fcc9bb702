package websocket_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
	"go.uber.org/goleak"
)

// The helpers of the tests for CloseRead, NetConn and the JSON functions.
// They use only the exported API, as an application would.

// checkNoLeaks fails t if goroutines started during the test outlive it.
// It is registered first, so it runs after every other cleanup.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// wsServer serves handler inside websocket.Open and returns the ws:// URL.
// Open's result is sent on the returned channel.
func wsServer(t *testing.T, opts *websocket.AcceptOptions, handler func(ctx context.Context, c *websocket.Conn) error) (string, <-chan error) {
	t.Helper()
	result := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		result <- websocket.Open(w, r, opts, handler)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), result
}

func wsDial(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// wsTestCtx bounds a test that would otherwise hang on a bug.
func wsTestCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recv waits for a value from ch, failing t when ctx ends first.
func recv[T any](t *testing.T, ctx context.Context, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

// echoMessages writes every message back as it came, until a read or a
// write fails: the handler of tests that need an echo and nothing else.
func echoMessages(ctx context.Context, c *websocket.Conn) error {
	for {
		msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, msg.Type, msg.Data); err != nil {
			return err
		}
	}
}
