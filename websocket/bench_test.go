package websocket

import (
	"context"
	"net"
	"strconv"
	"testing"
)

func BenchmarkMask(b *testing.B) {
	for _, n := range []int{16, 128, 1024, 16 << 10} {
		p := make([]byte, n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			key := uint32(0x12345678)
			for b.Loop() {
				key = maskBytes(key, p)
			}
		})
	}
}

func BenchmarkFrameHeader(b *testing.B) {
	h := frameHeader{fin: true, opcode: opBinary, masked: true, key: 0x12345678, length: 1 << 12}
	buf := make([]byte, 0, maxHeaderSize)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			buf = appendFrameHeader(buf[:0], h)
		}
	})
	enc := appendFrameHeader(nil, h)
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := parseFrameHeader(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// pipePair connects a client and a server Conn over a real TCP loopback
// connection, without an HTTP handshake.
func pipePair(b *testing.B) (client, server *Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	sc := <-accepted
	client = newConn(connConfig{t: newSocketTransport(cc), client: true})
	server = newConn(connConfig{t: newSocketTransport(sc)})
	b.Cleanup(func() { client.CloseNow(); server.CloseNow() })
	return client, server
}

// BenchmarkRoundTrip measures one message from client to server and back:
// both sides' write (with masking on the client) and read paths.
func BenchmarkRoundTrip(b *testing.B) {
	for _, n := range []int{64, 1024, 16 << 10} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			client, server := pipePair(b)
			ctx := context.Background()
			go func() {
				for {
					msg, err := server.Read(ctx)
					if err != nil {
						return
					}
					server.SendBinary(msg.Data)
					if server.Flush() != nil {
						return
					}
				}
			}()
			p := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := client.Write(ctx, MessageBinary, p); err != nil {
					b.Fatal(err)
				}
				if _, err := client.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTripEvents is BenchmarkRoundTrip with the server's
// connection in the events mode (on Linux, the event loop): the same echo
// from OnMessage.
func BenchmarkRoundTripEvents(b *testing.B) {
	for _, n := range []int{64, 1024, 16 << 10} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			client, server := pipePair(b)
			server.ev = newEventsState(Events{OnMessage: func(c *Conn, msg Message) error {
				c.SendBinary(msg.Data)
				return c.Flush()
			}})
			server.startEvents(false)
			ctx := context.Background()
			p := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := client.Write(ctx, MessageBinary, p); err != nil {
					b.Fatal(err)
				}
				if _, err := client.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadMessage measures the read path alone on prepared frames.
func BenchmarkReadMessage(b *testing.B) {
	for _, n := range []int{64, 1024} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			frame := appendFrameHeader(nil, frameHeader{fin: true, opcode: opText, masked: true, key: 0x01020304, length: int64(n)})
			payload := make([]byte, n)
			for i := range payload {
				payload[i] = 'a'
			}
			maskBytes(0x01020304, payload)
			frame = append(frame, payload...)
			const batch = 256
			var in []byte
			for range batch {
				in = append(in, frame...)
			}
			tr := &scriptedTransport{}
			c := newConn(connConfig{t: tr})
			ctx := context.Background()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%batch == 0 {
					tr.in = in
				}
				i++
				if _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteMessage measures the server's write path (SendText + Flush).
func BenchmarkWriteMessage(b *testing.B) {
	for _, n := range []int{64, 1024} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			tr := &scriptedTransport{}
			c := newConn(connConfig{t: tr})
			p := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				tr.out.Reset()
				c.SendText(p)
				if err := c.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
