package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/duplexws/duplex/bench/internal/srvkit"
)

// The hijack floor answers a WebSocket handshake with RFC 6455's 101 (the
// accept value of the RFC's own example key), keeps the upgraded connection
// open while the client is idle, and closes it on the client's first byte.
func TestHijackHandshake(t *testing.T) {
	srv, err := start(srvkit.Config{Addr: "127.0.0.1:0", Mode: srvkit.ModeEcho, Variant: hijackVariant})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: "+srv.Addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" ||
		res.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("%s %v", res.Status, res.Header)
	}

	// Idle: the server holds the connection (the read times out, no EOF).
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: read %d bytes, %v; want the deadline", n, err)
	}
	// It serves no messages: a byte from the client ends the connection.
	if _, err := c.Write([]byte{0x81}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the client's first byte: read %d bytes, %v; want EOF", n, err)
	}
}

// The hijack floor holds idle connections only: it refuses broadcast mode
// at startup rather than be measured there as something it is not.
func TestHijackRefusesBroadcast(t *testing.T) {
	srv, err := start(srvkit.Config{Addr: "127.0.0.1:0", Mode: srvkit.ModeBroadcast, Variant: hijackVariant})
	if err == nil {
		srv.Stop()
		t.Fatal("started in broadcast mode")
	}
}
