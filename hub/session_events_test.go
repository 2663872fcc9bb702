package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestEventLoopOverTLS: over TLS the event loop gives each connection a
// reading goroutine that calls the same callbacks (websocket.AcceptEvents),
// and the hub's session runs on them as on the loop: a client connects,
// subscribes and receives a publication, and one that sends nothing is
// closed with CloseConnectTimeout (the timer of the event-loop mode, which
// starts after AcceptEvents returns while that goroutine may already run).
func TestEventLoopOverTLS(t *testing.T) {
	h := New(Options{EventLoop: true, ConnectTimeout: 200 * time.Millisecond})
	srv := httptest.NewTLSServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
	})
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPClient: srv.Client()})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}

	c := subscribeSyncWith(t, ctx, url, "tls", srv.Client())
	t.Cleanup(func() { c.CloseNow() })
	if _, err := h.Publish(ctx, "tls", json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := c.Read(ctx)
	if err != nil || !strings.Contains(string(msg.Data), `"push":"pub"`) {
		t.Fatalf("the publication: %s, %v", msg.Data, err)
	}

	silent := dial()
	var ce *websocket.CloseError
	for {
		if _, err = silent.Read(ctx); err != nil {
			break // the disconnect push comes first
		}
	}
	if !errors.As(err, &ce) || ce.Code != CloseConnectTimeout {
		t.Fatalf("a client that sent nothing: %v, want the close %d", err, CloseConnectTimeout)
	}
}
