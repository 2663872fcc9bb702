package websocket

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
)

// connPairs opens n client/server pairs over loopback TCP with the given
// compression on both sides (nil: none), makes every pair exchange a few
// compressed messages, and returns them with a cleanup.
func connPairs(tb testing.TB, n int, co *CompressionOptions) (clients, servers []*Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	var p deflateParams
	if co != nil {
		p = deflateParams{sendNoTakeover: co.NoContextTakeover, recvNoTakeover: co.NoContextTakeover,
			sendWindowBits: co.maxWindowBits(), recvWindowBits: co.maxWindowBits()}
	}
	msg := []byte(`{"text":"hello from a chat client, with the usual JSON around it","room":"lobby"}`)
	ctx := context.Background()
	for range n {
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		var cd, sd *deflater
		if co != nil {
			cd, sd = newDeflater(p, co), newDeflater(p, co)
		}
		client := newConn(connConfig{t: newSocketTransport(cc), client: true, opts: &Options{Compression: co}, deflate: cd})
		server := newConn(connConfig{t: newSocketTransport(sc), opts: &Options{Compression: co}, deflate: sd})
		for range 3 {
			if err := client.Write(ctx, MessageText, msg); err != nil {
				tb.Fatal(err)
			}
			if _, err := server.Read(ctx); err != nil {
				tb.Fatal(err)
			}
			if err := server.Write(ctx, MessageText, msg); err != nil {
				tb.Fatal(err)
			}
			if _, err := client.Read(ctx); err != nil {
				tb.Fatal(err)
			}
		}
		clients, servers = append(clients, client), append(servers, server)
	}
	tb.Cleanup(func() {
		for i := range clients {
			clients[i].CloseNow()
			servers[i].CloseNow()
		}
	})
	return clients, servers
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// measureConnMemory returns the heap kept per connection (both ends of a
// pair count as two connections) once the pairs are idle.
func measureConnMemory(tb testing.TB, n int, co *CompressionOptions) float64 {
	before := heapInUse()
	clients, servers := connPairs(tb, n, co)
	after := heapInUse()
	runtime.KeepAlive(clients)
	runtime.KeepAlive(servers)
	return float64(after-before) / float64(2*n)
}

// TestDeflateMemoryPerConnection checks that idle connections keep what the
// documentation says: no pooled buffers, and with context takeover only
// the two history windows.
func TestDeflateMemoryPerConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	const n = 300
	cases := []struct {
		name  string
		co    *CompressionOptions
		bound float64 // bytes per idle connection
	}{
		{"no compression", nil, 4 << 10},
		{"no context takeover", &CompressionOptions{NoContextTakeover: true, Threshold: -1}, 4 << 10},
		{"takeover, 13-bit windows", &CompressionOptions{Threshold: -1}, 4<<10 + 2*(1<<13)},
		{"takeover, 15-bit windows", &CompressionOptions{MaxWindowBits: 15, Threshold: -1}, 4<<10 + 2*(1<<15)},
	}
	for _, tc := range cases {
		per := measureConnMemory(t, n, tc.co)
		t.Logf("%-26s %7.0f bytes per idle connection", tc.name, per)
		if per > tc.bound {
			t.Errorf("%s: %.0f bytes per idle connection, want at most %.0f", tc.name, per, tc.bound)
		}
	}
}

func BenchmarkDeflateMemoryPerConnection(b *testing.B) {
	for _, tc := range []struct {
		name string
		co   *CompressionOptions
	}{
		{"none", nil},
		{"no-takeover", &CompressionOptions{NoContextTakeover: true, Threshold: -1}},
		{"takeover-13", &CompressionOptions{Threshold: -1}},
		{"takeover-15", &CompressionOptions{MaxWindowBits: 15, Threshold: -1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = measureConnMemory(b, 200, tc.co)
			}
			b.ReportMetric(per, "B/conn")
		})
	}
}

// BenchmarkDeflateRoundTrip measures a compressed echo over loopback.
func BenchmarkDeflateRoundTrip(b *testing.B) {
	for _, tc := range []struct {
		name string
		co   *CompressionOptions
	}{
		{"takeover", &CompressionOptions{Threshold: -1}},
		{"no-takeover", &CompressionOptions{NoContextTakeover: true, Threshold: -1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			clients, servers := connPairs(b, 1, tc.co)
			client, server := clients[0], servers[0]
			ctx := context.Background()
			go func() {
				for {
					msg, err := server.Read(ctx)
					if err != nil {
						return
					}
					if server.Write(ctx, msg.Type, msg.Data) != nil {
						return
					}
				}
			}()
			roundTrips(b, client, MessageText, chatLike(newTestRand(), 1024))
		})
	}
}

// BenchmarkDeflatePriming measures what indexing the history costs before a
// 1 KiB message: the reason startMessage primes small messages with part of
// the history only.
func BenchmarkDeflatePriming(b *testing.B) {
	p := chatLike(newTestRand(), 1024)
	hist := chatLike(newTestRand(), 8192)
	for _, n := range []int{0, 2048, 8192} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			fw := getFlateWriter(1, 15, io.Discard, nil)
			for b.Loop() {
				fw.ResetDict(io.Discard, hist[len(hist)-n:])
				fw.Write(p)
				fw.Flush()
			}
		})
	}
}
