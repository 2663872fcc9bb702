package websocket

import (
	"context"
	"strconv"
	"testing"
)

// The benchmarks here measure one compressed message on the buffer-reusing
// paths, without a socket: ReadInto on masked compressed frames, SendBinary
// + Flush, and SendPrepared + Flush. Each rotates through 64 different
// chat-like payloads, as bench/'s deflate scenario does, so that a
// connection keeping context cannot answer with a back-reference to the
// same message.

const deflateBenchVariants = 64

// deflateBenchModes are the two ways a connection compresses.
var deflateBenchModes = []struct {
	name string
	co   *CompressionOptions
}{
	{"takeover", &CompressionOptions{Binary: true}},
	{"no-takeover", &CompressionOptions{Binary: true, NoContextTakeover: true}},
}

// deflateBenchConn is a connection of the given side with permessage-deflate
// negotiated as co asks on both directions, over a scripted transport.
func deflateBenchConn(co *CompressionOptions, client bool) (*Conn, *scriptedTransport) {
	p := deflateParams{sendNoTakeover: co.NoContextTakeover, recvNoTakeover: co.NoContextTakeover,
		sendWindowBits: 15, recvWindowBits: 15}
	tr := &scriptedTransport{}
	c := newConn(connConfig{t: tr, client: client, opts: &Options{Compression: co}, deflate: newDeflater(p, co)})
	return c, tr
}

func deflateBenchPayloads(size int) [][]byte {
	rng := newTestRand()
	out := make([][]byte, deflateBenchVariants)
	for i := range out {
		out[i] = chatLike(rng, size)
	}
	return out
}

func BenchmarkDeflateReadInto(b *testing.B) {
	for _, size := range []int{1024, 16 << 10} {
		for _, mode := range deflateBenchModes {
			b.Run(strconv.Itoa(size)+"/"+mode.name, func(b *testing.B) {
				// A client writes the batch once; replaying it is valid with
				// context takeover too, since the client began it with an
				// empty history.
				client, ctr := deflateBenchConn(mode.co, true)
				ctx := context.Background()
				for _, p := range deflateBenchPayloads(size) {
					if err := client.Write(ctx, MessageBinary, p); err != nil {
						b.Fatal(err)
					}
				}
				in := ctr.out.Bytes()
				server, tr := deflateBenchConn(mode.co, false)
				var buf []byte
				b.SetBytes(int64(size))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i%deflateBenchVariants == 0 {
						tr.in = in
					}
					i++
					msg, err := server.ReadInto(ctx, buf)
					if err != nil {
						b.Fatal(err)
					}
					buf = msg.Data
				}
			})
		}
	}
}

func BenchmarkDeflateSend(b *testing.B) {
	for _, size := range []int{1024, 16 << 10} {
		for _, mode := range deflateBenchModes {
			b.Run(strconv.Itoa(size)+"/"+mode.name, func(b *testing.B) {
				server, tr := deflateBenchConn(mode.co, false)
				payloads := deflateBenchPayloads(size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					tr.out.Reset()
					if err := server.SendBinary(payloads[i%deflateBenchVariants]); err != nil {
						b.Fatal(err)
					}
					i++
					if err := server.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDeflatePrepared sends a prepared message to a connection without
// context takeover: compressed once, then only framed per send.
func BenchmarkDeflatePrepared(b *testing.B) {
	for _, size := range []int{1024, 16 << 10} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			server, tr := deflateBenchConn(deflateBenchModes[1].co, false)
			pm := NewPreparedMessage(MessageBinary, deflateBenchPayloads(size)[0])
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				tr.out.Reset()
				if err := server.SendPrepared(pm); err != nil {
					b.Fatal(err)
				}
				if err := server.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
