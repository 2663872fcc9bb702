package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestHandshakeFlood opens WebSockets as fast as 16 goroutines can against
// a server that must refuse them: at -max-connections, held by connections
// that echo all along, every one gets 503 with Retry-After and none gets
// past the cap; with -handshake-rate, the flood from one address gets 429
// with Retry-After beyond the burst and the rate. Meanwhile the existing
// connections keep echoing (their latency before and during the flood is
// logged, not asserted), the refusals are counted in /metrics, nothing
// panics, and the goroutines and heap come back to where they were.
func TestHandshakeFlood(t *testing.T) {
	flood := 2 * time.Second
	if os.Getenv("DUPLEX_LONG") == "1" {
		flood = 10 * time.Second
	}
	const rate, burst = 5, 10
	for _, tc := range []struct {
		name   string
		args   []string
		held   int    // connections open before the flood, echoing through it
		status int    // of every refusal
		result string // the refusals' label in duplex_websocket_handshakes_total
	}{
		{"connection cap", []string{"-max-connections", "20"}, 20, http.StatusServiceUnavailable, "limit"},
		{"handshake rate", []string{"-handshake-rate", strconv.Itoa(rate), "-handshake-burst", strconv.Itoa(burst)},
			5, http.StatusTooManyRequests, "rate_limited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRun(t, append([]string{"-addr", "127.0.0.1:0", "-broker", "memory"}, tc.args...), nil)
			ctx, cancel := context.WithTimeout(t.Context(), 2*testTimeout+flood)
			defer cancel()
			start := time.Now()
			held := make([]*websocket.Conn, tc.held)
			for i := range held {
				held[i] = dialChat(t, ctx, srv.addr)
			}
			var before latencies
			if err := echoAll(ctx, held, &before, nil); err != nil {
				t.Fatalf("echo before the flood: %v", err)
			}
			base := measureUsage()

			var during latencies
			stopEcho := make(chan struct{})
			echoErr := make(chan error, 1)
			go func() { echoErr <- echoAll(ctx, held, &during, stopEcho) }()
			floodDone := make(chan floodResult, 1)
			go func() { floodDone <- floodHandshakes(ctx, srv.addr, 16, flood, tc.status) }()
			time.Sleep(flood / 2)
			peak := measureUsage()
			res := <-floodDone
			close(stopEcho)
			if err := <-echoErr; err != nil {
				t.Errorf("an existing connection failed during the flood: %v", err)
			}
			elapsed := time.Since(start)

			if res.others > 0 {
				t.Errorf("%d of %d handshakes neither accepted nor refused with %d and Retry-After; first: %v",
					res.others, res.attempts, tc.status, res.firstOther)
			}
			switch {
			case res.refused == 0:
				t.Errorf("none of %d handshakes was refused", res.attempts)
			case tc.status == http.StatusServiceUnavailable && res.accepted > 0:
				t.Errorf("%d handshakes got past the cap held by %d connections", res.accepted, tc.held)
			case tc.status == http.StatusTooManyRequests && float64(res.accepted+tc.held) > burst+rate*elapsed.Seconds():
				t.Errorf("%d + %d handshakes accepted from one address in %v, over a burst of %d and %d per second",
					res.accepted, tc.held, elapsed, burst, rate)
			}
			m := getMetrics(t, srv.addr)
			if got := m.value("duplex_websocket_handshakes_total", "endpoint", "echo", "transport", "http1", "result", tc.result); got != float64(res.refused) {
				t.Errorf("/metrics counts %v handshakes with result=%s, the flood had %d refused", got, tc.result, res.refused)
			}
			if lines := srv.logs.linesWith("panic"); len(lines) > 0 {
				t.Errorf("the server panicked:\n%s", lines)
			}
			after := awaitBaseline(t, base, peak)
			t.Logf("flood of %v: %d handshakes (%.0f/s): %d refused with %d and Retry-After, %d accepted, %d otherwise",
				flood, res.attempts, float64(res.attempts)/flood.Seconds(), res.refused, tc.status, res.accepted, res.others)
			t.Logf("echo on the %d existing connections: before %v; during %v", tc.held, &before, &during)
			t.Logf("baseline: %v", base)
			t.Logf("peak:     %v", peak)
			t.Logf("after:    %v", after)
		})
	}
}

// echoAll echoes on every connection, each in its own goroutine, recording
// the latencies: 20 times each, or every 10 ms until stop is closed. It
// returns the first error.
func echoAll(ctx context.Context, conns []*websocket.Conn, lat *latencies, stop <-chan struct{}) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, c := range conns {
		wg.Go(func() {
			for j := 0; stop != nil || j < 20; j++ {
				if stop != nil {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
				start := time.Now()
				if err := echoOnce(ctx, c, fmt.Sprintf("held %d/%d", i, j)); err != nil {
					errs <- err
					return
				}
				lat.add(time.Since(start))
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when there was none
}

// floodResult counts a flood's handshakes by outcome.
type floodResult struct {
	attempts, accepted, refused int
	others                      int   // neither accepted nor refused as expected
	firstOther                  error // the first of those
}

// floodHandshakes dials /chat/connect from workers goroutines, one
// handshake after the other each, for d. An accepted WebSocket is dropped
// at once; a refusal counts when its status is want and it has a
// Retry-After of whole seconds.
func floodHandshakes(ctx context.Context, addr string, workers int, d time.Duration, want int) floodResult {
	var (
		mu  sync.Mutex
		res floodResult
		wg  sync.WaitGroup
	)
	var stop atomic.Bool
	time.AfterFunc(d, func() { stop.Store(true) })
	for range workers {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/chat/connect", &websocket.DialOptions{Header: originHeader(addr)})
				var he *websocket.HandshakeError
				mu.Lock()
				res.attempts++
				switch {
				case err == nil:
					res.accepted++
					c.CloseNow()
				case errors.As(err, &he) && he.Status == want && retryAfterSeconds(resp) > 0:
					res.refused++
				default:
					if res.others++; res.firstOther == nil {
						res.firstOther = err
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}

// retryAfterSeconds reads a response's Retry-After as a number of seconds;
// 0 when there is none.
func retryAfterSeconds(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	n, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return n
}
