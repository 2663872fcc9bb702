package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// BenchmarkHubFanOut publishes to one room of 1000 subscribers over loopback
// and waits until every subscriber has read the publication: ns/op is the
// cost of one publication's whole fan-out, and allocs/op counts the server's
// and the clients' allocations together (the clients read with ReadInto).
//
//	go test -run XXX -bench HubFanOut -benchmem ./hub/
func BenchmarkHubFanOut(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("1000x%dB", size), func(b *testing.B) { benchFanOut(b, 1000, size) })
	}
}

func benchFanOut(b *testing.B, n, size int) {
	h := New(Options{QueueMessages: 1 << 20, QueueBytes: 1 << 30})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := context.Background()

	var received atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"op":"connect"}`))
		c.Write(ctx, websocket.MessageText, []byte(`{"id":2,"op":"subscribe","room":"bench"}`))
		for range 2 {
			if _, err := c.Read(ctx); err != nil {
				b.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 4096)
			for {
				msg, err := c.ReadInto(ctx, buf)
				if err != nil {
					return
				}
				buf = msg.Data[:0]
				received.Add(1)
			}
		}()
	}
	data := json.RawMessage(`"` + strings.Repeat("x", size) + `"`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Publish(ctx, "bench", data); err != nil {
			b.Fatal(err)
		}
		want := int64(i+1) * int64(n)
		for received.Load() < want {
			runtime.Gosched()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
	for _, c := range conns {
		c.CloseNow()
	}
	wg.Wait()
}
