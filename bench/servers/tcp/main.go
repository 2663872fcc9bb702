// Command tcp is the floor: a plain TCP echo of length-prefixed messages (a
// 4-byte big-endian length, then the payload), one goroutine per connection,
// no framing beyond the prefix, no masking, no handshake, no allocation per
// message. Broadcast mode writes each message to every connection from the
// sender's goroutine.
//
// With -variant hijack it is the floor of a server that upgrades through
// net/http instead (hijack.go): the WebSocket handshake served by net/http
// and hijacked, no WebSocket library, then one goroutine per connection
// blocked in a Read. It holds idle connections only, for the idle scenario:
// it refuses to start in broadcast mode, and in echo mode (the mode the
// idle scenario starts servers in) closes a connection on its first byte
// instead of echoing it.
package main

import (
	"encoding/binary"
	"io"
	"net"
	"sync"

	"github.com/duplexws/duplex/bench/internal/srvkit"
)

var features = srvkit.Features{Variants: []string{hijackVariant}}

func main() { srvkit.Main(start, features) }

type member struct {
	mu sync.Mutex
	c  net.Conn
}

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	if cfg.Variant == hijackVariant {
		return startHijack(cfg)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	room := srvkit.NewRoom[*member]()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c, cfg, room)
		}
	}()
	return &srvkit.Server{Addr: ln.Addr().String(), Stop: func() { ln.Close() }}, nil
}

// serve reads into one buffer per connection, allocated on the first byte
// (an idle connection holds none) and grown to the largest message, and
// writes every whole message back with one write: one read and one write per
// message when the client sends one at a time.
func serve(c net.Conn, cfg srvkit.Config, room *srvkit.Room[*member]) {
	defer c.Close()
	var me *member
	if cfg.Mode == srvkit.ModeBroadcast {
		me = &member{c: c}
		room.Join(me)
		defer room.Leave(me)
	}
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return
	}
	buf := make([]byte, 4096)
	buf[0] = first[0]
	r, w := 0, 1
	for {
		// whole messages in buf[r:w]
		for w-r >= 4 {
			n := int64(binary.BigEndian.Uint32(buf[r:]))
			if n > cfg.ReadLimit {
				return
			}
			end := r + 4 + int(n)
			if end > w {
				break
			}
			msg := buf[r:end]
			if me == nil {
				if _, err := c.Write(msg); err != nil {
					return
				}
			} else {
				room.Each(func(m *member) {
					m.mu.Lock()
					_, _ = m.c.Write(msg)
					m.mu.Unlock()
				})
			}
			r = end
		}
		if r == w {
			r, w = 0, 0
		}
		if w-r >= 4 { // make room for the whole message
			if need := 4 + int(binary.BigEndian.Uint32(buf[r:])); need > len(buf)-r {
				if need > len(buf) {
					nb := make([]byte, need)
					w = copy(nb, buf[r:w])
					buf = nb
				} else {
					w = copy(buf, buf[r:w])
				}
				r = 0
			}
		} else if r > 0 && len(buf)-w < 4 {
			w = copy(buf, buf[r:w])
			r = 0
		}
		n, err := c.Read(buf[w:])
		if err != nil {
			return
		}
		w += n
	}
}
