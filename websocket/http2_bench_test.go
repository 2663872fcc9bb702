package websocket_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// BenchmarkManyWebSockets opens 1000 WebSockets to one TLS server, each on
// its own TCP connection (HTTP/1.1) or all on one HTTP/2 connection, and
// measures, in the same run:
//
//   - B/ws: heap and stacks per WebSocket, both ends together (client and
//     server run in this process), after each has echoed one message;
//   - goroutines/ws, both ends together;
//   - msgs/s: echo round trips of 128-byte messages, all WebSockets at once.
//
// Run it alone, e.g.:
//
//	go test -run '^$' -bench ManyWebSockets -benchtime 20000x ./websocket/
func BenchmarkManyWebSockets(b *testing.B) {
	const sockets = 1000
	for _, run := range []struct {
		name         string
		v            websocket.HTTPVersion
		maxFrameSize int
	}{
		{"HTTP1-1000-TCP", websocket.HTTP1, 0},
		// Go's HTTP/2 client holds, per stream with a request body of
		// unknown length, a write buffer as big as the server's
		// SETTINGS_MAX_FRAME_SIZE, at most 512 KiB; Go's server says 1 MiB.
		{"HTTP2-1-TCP-server-default-frames", websocket.HTTP2, 0},
		{"HTTP2-1-TCP-16KiB-frames", websocket.HTTP2, 16 << 10},
	} {
		name, v := run.name, run.v
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(echoHandler(nil, nil))
			srv.EnableHTTP2 = true
			srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 2 * sockets, MaxReadFrameSize: run.maxFrameSize}
			srv.StartTLS()
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			opts := &websocket.DialOptions{HTTPClient: srv.Client(), HTTPVersion: v}
			payload := make([]byte, 128)

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			goroutinesBefore := runtime.NumGoroutine()

			conns := make([]*websocket.Conn, sockets)
			for i := range conns {
				c, _, err := websocket.Dial(ctx, "wss"+srv.URL[len("https"):]+"/", opts)
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = c
				if err := c.Write(ctx, websocket.MessageBinary, payload); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
			defer func() {
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() { c.Close(websocket.StatusNormalClosure, "") })
				}
				wg.Wait()
				srv.Client().Transport.(*http.Transport).CloseIdleConnections()
			}()
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			mem := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
			goroutines := runtime.NumGoroutine() - goroutinesBefore

			var left atomic.Int64
			left.Store(int64(b.N))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						if err := c.Write(ctx, websocket.MessageBinary, payload); err != nil {
							b.Error(err)
							return
						}
						if _, err := c.Read(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(mem/sockets, "B/ws")
			b.ReportMetric(float64(goroutines)/sockets, "goroutines/ws")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(0, "ns/op") // the round trips overlap: msgs/s says it
			b.Logf("%s: %d WebSockets, %.0f B and %.1f goroutines each (both ends), %.0f msgs/s over %d round trips",
				name, sockets, mem/sockets, float64(goroutines)/sockets, float64(b.N)/elapsed.Seconds(), b.N)
		})
	}
}
