package websocket

import (
	"strconv"
	"testing"
)

// System calls per message over a socket, counted from /proc/self/io
// (Linux): both ends live in this process, so each count is taken around
// one side's call alone, after the other side's call has returned.

// messageSyscalls runs each of n rounds and adds up the read and write
// system calls made during measured, which runs after before.
func messageSyscalls(t *testing.T, n int, before, measured func()) (reads, writes uint64) {
	t.Helper()
	if _, _, ok := syscallCounts(); !ok {
		t.Skip("no /proc/self/io")
	}
	count := func(f func()) (reads, writes uint64) {
		r0, w0, _ := syscallCounts()
		f()
		r1, w1, _ := syscallCounts()
		return r1 - r0, w1 - w0
	}
	// Reading /proc/self/io is itself a read or two: what a count of
	// nothing gives is taken off every count.
	baseReads, baseWrites := count(func() {})
	for range n {
		before()
		r, w := count(measured)
		reads += r - min(r, baseReads)
		writes += w - min(w, baseWrites)
	}
	return reads, writes
}

// TestSocketMessageIsOneRead: a message that has arrived whole is read
// from a socket with one read: up to 32 KiB always (the socket read
// buffer's size; with 8 KiB it took two), and up to 128 KiB once the
// messages before it were large too (the larger pooled buffer; with the
// 32 KiB one a 64 KiB message took two).
func TestSocketMessageIsOneRead(t *testing.T) {
	for _, size := range []int{30 << 10, 64 << 10, 100 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			client, server := pipePair(t)
			ctx := testCtx(t)
			p := make([]byte, size)
			var buf []byte
			exchange := func() {
				if err := client.Write(ctx, MessageBinary, p); err != nil {
					t.Fatal(err)
				}
			}
			read := func() {
				msg, err := server.ReadInto(ctx, buf)
				if err != nil || len(msg.Data) != len(p) {
					t.Fatal(len(msg.Data), err)
				}
				buf = msg.Data
			}
			exchange()
			read() // the first large message tells the reader to expect more
			const rounds = 50
			reads, _ := messageSyscalls(t, rounds, exchange, read)
			if reads > rounds*5/4 {
				t.Errorf("%d reads for %d messages of %d bytes, want about one each", reads, rounds, len(p))
			}
		})
	}
}

// TestSocketLargeMessageIsOneWrite: a server message written from the
// caller's slice (4 KiB and more) goes out with its header in one writev.
func TestSocketLargeMessageIsOneWrite(t *testing.T) {
	client, server := pipePair(t)
	ctx := testCtx(t)
	p := make([]byte, 16<<10)
	const rounds = 50
	_, writes := messageSyscalls(t, rounds, func() {}, func() {
		if err := server.SendBinary(p); err != nil {
			t.Fatal(err)
		}
		if err := server.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	// The client reads outside the counts, once they are taken.
	for range rounds {
		if _, err := client.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if writes > rounds*5/4 {
		t.Errorf("%d writes for %d messages of %d bytes, want one each", writes, rounds, len(p))
	}
}
