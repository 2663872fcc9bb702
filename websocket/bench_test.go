package websocket

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

func BenchmarkMask(b *testing.B) {
	for _, n := range []int{16, 64, 128, 1024, 16 << 10, 64 << 10} {
		p := make([]byte, n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			key := uint32(0x12345678)
			for b.Loop() {
				key = maskBytes(key, p)
			}
		})
		b.Run("copy/"+strconv.Itoa(n), func(b *testing.B) {
			dst := make([]byte, n)
			b.SetBytes(int64(n))
			key := uint32(0x12345678)
			for b.Loop() {
				key = maskCopy(key, dst, p)
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
func pipePair(tb testing.TB) (client, server *Conn) {
	cc, sc := tcpPair(tb)
	client = newConn(connConfig{t: newSocketTransport(cc), client: true})
	server = newConn(connConfig{t: newSocketTransport(sc)})
	tb.Cleanup(func() { client.CloseNow(); server.CloseNow() })
	return client, server
}

// tcpPair connects two TCP sockets over loopback: the dialling end, then
// the accepted one.
func tcpPair(tb testing.TB) (dialed, accepted *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	sc := <-ch
	if sc == nil {
		tb.Fatal("accept failed")
	}
	return cc.(*net.TCPConn), sc.(*net.TCPConn)
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
			roundTrips(b, client, MessageBinary, make([]byte, n))
		})
	}
}

// roundTrips writes p as a message of type typ and reads its echo, b.N times.
func roundTrips(b *testing.B, client *Conn, typ MessageType, p []byte) {
	ctx := context.Background()
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Write(ctx, typ, p); err != nil {
			b.Fatal(err)
		}
		if _, err := client.Read(ctx); err != nil {
			b.Fatal(err)
		}
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
			roundTrips(b, client, MessageBinary, make([]byte, n))
		})
	}
}

// BenchmarkReadMessage measures the read path alone on prepared frames.
func BenchmarkReadMessage(b *testing.B) {
	for _, n := range []int{64, 1024} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			frame := clientFrame(opText, true, bytes.Repeat([]byte("a"), n))
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

// echoInto is the benchmark server's echo (bench/servers/duplex): ReadInto
// reusing the last message's buffer, SendBinary, and Flush once no further
// message has arrived.
func echoInto(ctx context.Context, c *Conn) {
	var buf []byte
	for {
		msg, err := c.ReadInto(ctx, buf)
		if err != nil {
			return
		}
		buf = msg.Data
		if c.SendBinary(msg.Data) != nil {
			return
		}
		if !c.MessageReady() && c.Flush() != nil {
			return
		}
	}
}

// BenchmarkEcho measures the echo idiom over loopback TCP, both sides in
// this process: the client sends depth messages, flushes once and reads
// the depth replies, all with reused buffers, so allocs/op is the whole
// round trip's. depth 16 is the pipelined echo: the server reads messages
// that arrived together from one buffer and answers them with one write.
func BenchmarkEcho(b *testing.B) {
	for _, depth := range []int{1, 16} {
		for _, n := range []int{64, 1 << 10, 16 << 10, 64 << 10} {
			b.Run("depth"+strconv.Itoa(depth)+"/"+strconv.Itoa(n), func(b *testing.B) {
				client, server := pipePair(b)
				benchEcho(b, client, server, make([]byte, n), depth)
			})
		}
	}
}

// BenchmarkEchoDeflate is BenchmarkEcho's depth 1 with permessage-deflate
// on both sides, with and without context takeover, on text that
// compresses as chat does.
func BenchmarkEchoDeflate(b *testing.B) {
	for _, tc := range []struct {
		name string
		co   *CompressionOptions
	}{
		{"takeover", &CompressionOptions{Binary: true}},
		{"no-takeover", &CompressionOptions{Binary: true, NoContextTakeover: true}},
	} {
		for _, n := range []int{1 << 10, 16 << 10} {
			b.Run(tc.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				clients, servers := connPairs(b, 1, tc.co)
				benchEcho(b, clients[0], servers[0], chatLike(newTestRand(), n), 1)
			})
		}
	}
}

// benchEcho runs echoInto on server and times depth messages of p sent
// and read back by client, with system calls per message beside.
func benchEcho(b *testing.B, client, server *Conn, p []byte, depth int) {
	ctx := context.Background()
	go echoInto(ctx, server)
	buf := make([]byte, 0, len(p))
	b.SetBytes(int64(len(p) * depth))
	b.ReportAllocs()
	reads, writes, counted := syscallCounts()
	for b.Loop() {
		for range depth {
			if err := client.SendBinary(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := client.Flush(); err != nil {
			b.Fatal(err)
		}
		for range depth {
			msg, err := client.ReadInto(ctx, buf)
			if err != nil || len(msg.Data) != len(p) {
				b.Fatal(len(msg.Data), err)
			}
			buf = msg.Data
		}
	}
	if r, w, ok := syscallCounts(); ok && counted {
		ops := float64(b.N * depth)
		b.ReportMetric(float64(r-reads)/ops, "reads/msg")
		b.ReportMetric(float64(w-writes)/ops, "writes/msg")
	}
}

// syscallCounts reads this process's read and write system calls so far
// from /proc/self/io (Linux), both sides of a loopback benchmark together.
func syscallCounts() (reads, writes uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(b)) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, err := strconv.ParseUint(value, 10, 64)
		switch {
		case err != nil:
		case name == "syscr":
			reads = n
		case name == "syscw":
			writes = n
		}
	}
	return reads, writes, true
}
