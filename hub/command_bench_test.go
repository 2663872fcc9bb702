package hub

import (
	"context"
	"sync"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// BenchmarkHubCommand: clients that each send a publish command and wait
// for its reply, over and over, in each serveMode: the cost of a command's
// way in (a reading goroutine, or the event loop's callback) and through
// the command runner. allocs/op counts the server's and the clients'
// allocations together.
//
//	go test -run XXX -bench HubCommand -benchmem ./hub/
func BenchmarkHubCommand(b *testing.B) {
	const clients = 50
	for _, mode := range serveModes {
		b.Run(mode.name, func(b *testing.B) {
			_, url := startHub(b, mode, Options{PublishRate: -1})
			ctx := context.Background()
			conns := make([]*websocket.Conn, clients)
			for i := range conns {
				conns[i] = subscribeSync(b, ctx, url, "bench")
				defer conns[i].CloseNow()
			}
			cmd := []byte(`{"id":3,"op":"publish","room":"other","data":1}`)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, c := range conns {
				n := b.N / clients
				if i < b.N%clients {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					var buf []byte
					for range n {
						if err := c.Write(ctx, websocket.MessageText, cmd); err != nil {
							b.Error(err)
							return
						}
						msg, err := c.ReadInto(ctx, buf)
						if err != nil {
							b.Error(err)
							return
						}
						buf = msg.Data[:0]
					}
				}()
			}
			wg.Wait()
		})
	}
}
