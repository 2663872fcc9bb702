//go:build linux

package main

import (
	"context"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestEventLoopFlag: -event-loop reaches the hub. With it, /chat/hub's idle
// subscribers hold no goroutine (the process's go_goroutines, in /metrics,
// grows by the event loop's few, whatever their number); without it, one
// each. The clients read synchronously and hold none themselves.
func TestEventLoopFlag(t *testing.T) {
	const n = 40
	for _, tc := range []struct {
		name      string
		args      []string
		eventLoop bool
	}{{"default", nil, false}, {"-event-loop", []string{"-event-loop"}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv := startRun(t, append([]string{"-addr", "127.0.0.1:0", "-broker", "memory"}, tc.args...), nil)
			if len(srv.logs.linesWith("msg=listening", "event_loop="+map[bool]string{false: "false", true: "true"}[tc.eventLoop])) != 1 {
				t.Errorf("the listening line does not say event_loop=%v:\n%s", tc.eventLoop, srv.logs)
			}
			before := getMetrics(t, srv.addr).value("go_goroutines")
			for range n {
				c := dialHubClient(t, ctx, srv.addr, "idle", websocket.HTTP1)
				c.call(t, ctx, map[string]any{"op": "subscribe", "room": "idle"})
			}
			// The handshakes' and the commands' goroutines end soon.
			const few = n / 4
			var grew float64
			for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if grew = getMetrics(t, srv.addr).value("go_goroutines") - before; grew <= few || !tc.eventLoop && grew <= n+few {
					break
				}
			}
			t.Logf("%d idle subscribers: %+.0f goroutines", n, grew)
			if tc.eventLoop && grew > few {
				t.Errorf("with -event-loop, %d idle subscribers hold %.0f goroutines; want at most %d", n, grew, few)
			}
			if !tc.eventLoop && grew < n {
				t.Errorf("without -event-loop, %d idle subscribers hold %.0f goroutines; want one each", n, grew)
			}
		})
	}
}
