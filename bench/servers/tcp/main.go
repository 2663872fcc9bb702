// Command tcp is the floor: a plain TCP echo of length-prefixed messages (a
// 4-byte big-endian length, then the payload), one goroutine per connection,
// no framing beyond the prefix, no masking, no handshake. Broadcast mode
// writes each message to every connection from the sender's goroutine.
package main

import (
	"encoding/binary"
	"io"
	"net"
	"sync"

	"github.com/duplexws/duplex/bench/internal/srvkit"
)

var features = srvkit.Features{}

func main() { srvkit.Main(start, features) }

type member struct {
	mu sync.Mutex
	c  net.Conn
}

func start(cfg srvkit.Config) (*srvkit.Server, error) {
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

func serve(c net.Conn, cfg srvkit.Config, room *srvkit.Room[*member]) {
	defer c.Close()
	var hdr [4]byte
	var buf []byte
	var me *member
	if cfg.Mode == srvkit.ModeBroadcast {
		me = &member{c: c}
		room.Join(me)
		defer room.Leave(me)
	}
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n > cfg.ReadLimit {
			return
		}
		if int64(cap(buf)) < 4+n {
			buf = make([]byte, 4+n)
		}
		buf = buf[:4+n]
		copy(buf, hdr[:])
		if _, err := io.ReadFull(c, buf[4:]); err != nil {
			return
		}
		if me == nil {
			if _, err := c.Write(buf); err != nil {
				return
			}
			continue
		}
		room.Each(func(m *member) {
			m.mu.Lock()
			_, _ = m.c.Write(buf)
			m.mu.Unlock()
		})
	}
}
