package websocket_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// TestServerReserve: a place taken by Reserve (for an event stream, say)
// counts against MaxConnections as a WebSocket does, until it is released;
// a Reserve over the cap answers 503 as Open would.
func TestServerReserve(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), serverTestTimeout)
	defer cancel()
	ws := &websocket.Server{MaxConnections: 1}
	_, url := startH1(t, ws)

	release, err := ws.Reserve(httptest.NewRecorder(), httptest.NewRequest("GET", "/events", nil))
	if err != nil {
		t.Fatalf("Reserve on an empty server: %v", err)
	}
	_, resp, err := websocket.Dial(ctx, url, nil)
	wantLimitRefusal(t, "dial while the place is reserved", resp, err)

	rec := httptest.NewRecorder()
	if _, err := ws.Reserve(rec, httptest.NewRequest("GET", "/events", nil)); err == nil {
		t.Fatal("a second Reserve got a place over the cap")
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("Reserve over the cap answered %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}

	release()
	release() // a second call does nothing
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial once the place was released: %v", err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if err := ws.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
