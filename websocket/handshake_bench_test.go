//go:build linux

package websocket_test

import (
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// BenchmarkAcceptHandshake measures a server's opening handshake through
// net/http: a raw-socket client (rawConnect, a few small allocations of its
// own) asks, the handler Accepts and closes. B/op and allocs/op count the
// whole process, net/http's share included (its bufio reader and writer of
// each hijacked connection, about 8 KiB, it never gets back): what is left
// is the handshake's garbage per connection.
func BenchmarkAcceptHandshake(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	opts := &websocket.AcceptOptions{Options: websocket.Options{Compression: &websocket.CompressionOptions{Disabled: true}}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		_ = c.CloseNow()
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	addr := ln.Addr().(*net.TCPAddr)
	b.ReportAllocs()
	for b.Loop() {
		fd, err := rawConnect(addr, true)
		if err != nil {
			b.Fatal(err)
		}
		syscall.Close(fd)
	}
}
