package websocket

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// The benchmarks of fan-out and of the allocation-free read and write
// paths. allocs/op counts the whole process, the peer's goroutines too.

// sendForever has the client send p in batches of 16 messages per flush
// until the connection closes.
func sendForever(client *Conn, p []byte) {
	go func() {
		for {
			for range 16 {
				if client.SendBinary(p) != nil {
					return
				}
			}
			if client.Flush() != nil {
				return
			}
		}
	}()
}

// drainRaw discards whatever arrives on c's transport until it closes,
// without parsing it: the benchmarks measure the sender.
func drainRaw(c *Conn) {
	buf := make([]byte, 32<<10) // here, so no goroutine allocates while timed
	go func() {
		for {
			if _, err := c.t.Read(buf); err != nil {
				return
			}
		}
	}()
}

// BenchmarkServerRead measures a server reading client messages over
// loopback TCP with Read, which allocates each message's data, and with
// ReadInto, which reuses one buffer; the deflate cases read compressed
// messages (with context takeover).
func BenchmarkServerRead(b *testing.B) {
	for _, how := range []string{"Read", "ReadInto", "Read-deflate", "ReadInto-deflate"} {
		for _, n := range []int{64, 16 << 10} {
			b.Run(how+"/"+strconv.Itoa(n), func(b *testing.B) {
				var client, server *Conn
				if strings.HasSuffix(how, "-deflate") {
					clients, servers := connPairs(b, 1, &CompressionOptions{Binary: true})
					client, server = clients[0], servers[0]
				} else {
					client, server = pipePair(b)
				}
				sendForever(client, chatLike(newTestRand(), n))
				ctx := context.Background()
				buf := make([]byte, 0, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					var msg Message
					var err error
					if strings.HasPrefix(how, "Read-") || how == "Read" {
						msg, err = server.Read(ctx)
					} else {
						msg, err = server.ReadInto(ctx, buf)
						buf = msg.Data
					}
					if err != nil || len(msg.Data) != n {
						b.Fatal(len(msg.Data), err)
					}
				}
			})
		}
	}
}

// BenchmarkServerWrite measures a server writing one message per flush to
// a client over loopback TCP: SendText and Flush against WritePrepared
// with a message prepared once.
func BenchmarkServerWrite(b *testing.B) {
	for _, how := range []string{"SendText", "WritePrepared"} {
		for _, n := range []int{64, 16 << 10} {
			b.Run(how+"/"+strconv.Itoa(n), func(b *testing.B) {
				client, server := pipePair(b)
				drainRaw(client)
				p := make([]byte, n)
				pm := NewPreparedMessage(MessageText, p)
				ctx := context.Background()
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if how == "SendText" {
						server.SendText(p)
						err = server.Flush()
					} else {
						err = server.WritePrepared(ctx, pm)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFanOut writes one message to 1000 server connections over
// loopback TCP, whose clients are drained by their own goroutines: with
// SendText and Flush per connection, or prepared once per message (inside
// the timed loop) and written with WritePrepared. The deflate cases
// compress text for peers without context takeover: once per connection
// with SendText, once in all with a prepared message.
func BenchmarkFanOut(b *testing.B) {
	const conns = 1000
	for _, tc := range []struct {
		name string
		co   *CompressionOptions // nil: no compression
		n    int
	}{
		{"plain/64", nil, 64},
		{"plain/16384", nil, 16 << 10},
		{"deflate-no-takeover/1024", &CompressionOptions{NoContextTakeover: true}, 1 << 10},
		{"deflate-no-takeover/16384", &CompressionOptions{NoContextTakeover: true}, 16 << 10},
	} {
		for _, how := range []string{"SendText", "Prepared"} {
			b.Run(tc.name+"/"+how, func(b *testing.B) {
				var servers []*Conn
				if tc.co == nil {
					for range conns {
						client, server := pipePair(b)
						drainRaw(client)
						servers = append(servers, server)
					}
				} else {
					var clients []*Conn
					clients, servers = connPairs(b, conns, tc.co)
					for _, c := range clients {
						drainRaw(c)
					}
				}
				p := chatLike(newTestRand(), tc.n)
				ctx := context.Background()
				fanOut := func() {
					if how == "SendText" {
						for _, s := range servers {
							s.SendText(p)
							if err := s.Flush(); err != nil {
								b.Fatal(err)
							}
						}
						return
					}
					pm := NewPreparedMessage(MessageText, p)
					for _, s := range servers {
						if err := s.WritePrepared(ctx, pm); err != nil {
							b.Fatal(err)
						}
					}
				}
				// Once untimed: a socket's first writev allocates its iovecs.
				fanOut()
				b.SetBytes(int64(tc.n * conns))
				b.ReportAllocs()
				for b.Loop() {
					fanOut()
				}
			})
		}
	}
}
