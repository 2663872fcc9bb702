package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"

	"github.com/duplexws/duplex/bench/internal/srvkit"
)

// hijackVariant is the -variant of the net/http hijack floor: the least a
// server that upgrades through net/http holds per idle connection, with no
// WebSocket library, so that the idle scenario can tell the part of a
// library's cost that is net/http's (its per-handshake garbage under the
// collector's pacing) from the library's own.
const hijackVariant = "hijack"

// websocketGUID is RFC 6455's key suffix (§1.3) for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// startHijack serves the WebSocket handshake on /ws through net/http and
// keeps each upgraded connection idle, in echo mode only: the variant
// serves no messages, so broadcast is refused rather than measured as
// something it is not.
func startHijack(cfg srvkit.Config) (*srvkit.Server, error) {
	if cfg.Mode != srvkit.ModeEcho {
		return nil, errors.New("-variant hijack holds idle connections only (the idle scenario, -mode echo), not -mode " + cfg.Mode)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", upgradeAndPark)
	return srvkit.ServeHTTP(cfg, mux)
}

// upgradeAndPark answers the handshake with 101 over the hijacked
// connection and leaves it to a goroutine of its own, so that net/http's
// goroutine, its request and its buffers go when the handler returns (as
// websocket.Accept followed by `go serve(c)` does). It checks only what it
// needs: a key to answer.
func upgradeAndPark(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		http.Error(w, "not a WebSocket handshake: no Sec-WebSocket-Key", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	// net/http's goroutine keeps the hijacked reader and writer (4 KiB
	// each) reachable until this handler returns; emptied now they are
	// garbage at once, as websocket/accept.go's releaseHijackedBuffers
	// does. The client sends nothing before the 101, so the reader holds
	// no bytes of the connection.
	*brw.Reader = bufio.Reader{}
	*brw.Writer = bufio.Writer{}
	if _, err := c.Write(switchingProtocols(key)); err != nil {
		c.Close()
		return
	}
	go park(c)
}

// switchingProtocols is the 101 answer to a handshake with key (RFC 6455
// §4.2.2).
func switchingProtocols(key string) []byte {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
}

// park blocks in a one-byte Read, as the floor's serve does before its
// first message (an idle connection holds no buffer), and closes the
// connection when the client sends anything or goes.
func park(c net.Conn) {
	defer c.Close()
	var first [1]byte
	_, _ = c.Read(first[:])
}
