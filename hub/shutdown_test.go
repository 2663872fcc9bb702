package hub

import (
	"context"
	"testing"
	"time"
)

// TestCommandsRunWhileShutdownDrains: while Shutdown spreads its close
// frames over DrainWindow, a client not yet closed is served as before:
// its commands get their replies, none closes the connection. (The
// event-loop mode waits for a command slot on the Hub's context, which
// Shutdown ends first.)
func TestCommandsRunWhileShutdownDrains(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		h, url := startHub(t, mode, Options{DrainWindow: 3 * time.Second})
		clients := []*testClient{dialHub(t, url, `{}`), dialHub(t, url, `{}`)}
		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shutdown <- h.Shutdown(ctx)
		}()
		// The drain closes one client at once and the other after half
		// the window.
		var open *testClient
		for open == nil {
			for i, c := range clients {
				select {
				case <-c.done:
					open = clients[1-i]
				default:
				}
			}
			time.Sleep(time.Millisecond)
		}
		for i := range 20 {
			m := open.call(map[string]any{"op": "publish", "room": "drain", "data": i})
			if m.Error != nil {
				t.Fatalf("publish %d while the drain goes on: %v", i, m.Error)
			}
		}
		if code, _ := open.closeCode(5 * time.Second); code != 1001 {
			t.Errorf("the second client was closed with %d, want 1001", code)
		}
		if err := <-shutdown; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}
