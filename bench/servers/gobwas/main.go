// Command gobwas is the gobwas/ws benchmark server, written as the README's
// first example: ws.UpgradeHTTP in a net/http handler, then a goroutine that
// loops over wsutil.ReadClientData and wsutil.WriteServerMessage. With
// compression it follows the README's wsutil + wsflate example (a
// wsflate.Extension negotiated at upgrade, flate reader and writer reset per
// message; the flate level is BestSpeed, as the other libraries default to).
//
// Broadcast: gobwas/ws has no broadcaster, but it can compile a frame once
// (ws.CompileFrame); each subscriber gets the same bytes through a channel
// drained by its own writer goroutine.
package main

import (
	"compress/flate"
	"io"
	"net"
	"net/http"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
)

var features = srvkit.Features{Compression: true}

func main() { srvkit.Main(start, features) }

type subscriber struct{ frames chan []byte }

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	wsutil.SetMaxMessageSize(cfg.ReadLimit)
	room := srvkit.NewRoom[*subscriber]()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Compress {
			e := &wsflate.Extension{Parameters: wsflate.DefaultParameters}
			u := ws.HTTPUpgrader{Negotiate: e.Negotiate}
			conn, _, _, err := u.Upgrade(r, w)
			if err != nil {
				return
			}
			_, ok := e.Accepted()
			go echoCompressed(conn, ok, cfg.ReadLimit)
			return
		}
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		if cfg.Mode == srvkit.ModeBroadcast {
			go broadcast(conn, room)
			return
		}
		go func() {
			defer conn.Close()
			for {
				msg, op, err := wsutil.ReadClientData(conn)
				if err != nil {
					return
				}
				if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
					return
				}
			}
		}()
	})
	return srvkit.ServeHTTP(cfg, mux)
}

func broadcast(conn net.Conn, room *srvkit.Room[*subscriber]) {
	defer conn.Close()
	s := &subscriber{frames: make(chan []byte, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range s.frames {
			if _, err := conn.Write(f); err != nil {
				conn.Close()
				for range s.frames {
				}
				return
			}
		}
	}()
	room.Join(s)
	defer func() {
		room.Leave(s)
		close(s.frames)
		<-done
	}()
	for {
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		frame, err := ws.CompileFrame(ws.NewFrame(op, true, msg))
		if err != nil {
			return
		}
		room.Each(func(m *subscriber) { m.frames <- frame })
	}
}

// echoCompressed is the README's "compression with wsutil" loop, with the
// control frames and uncompressed messages it leaves out handled.
func echoCompressed(conn net.Conn, negotiated bool, limit int64) {
	defer conn.Close()
	if !negotiated {
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
				return
			}
		}
	}
	fr := wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor {
		return flate.NewReader(r)
	})
	fw := wsflate.NewWriter(nil, func(w io.Writer) wsflate.Compressor {
		f, _ := flate.NewWriter(w, flate.BestSpeed)
		return f
	})
	var msg wsflate.MessageState
	rd := &wsutil.Reader{
		Source:         conn,
		State:          ws.StateServerSide | ws.StateExtended,
		Extensions:     []wsutil.RecvExtension{&msg},
		MaxMessageSize: limit,
		OnIntermediate: wsutil.ControlFrameHandler(conn, ws.StateServerSide),
	}
	wr := wsutil.NewWriter(conn, ws.StateServerSide|ws.StateExtended, 0)
	wr.SetExtensions(&msg)
	control := wsutil.ControlFrameHandler(conn, ws.StateServerSide)
	for {
		h, err := rd.NextFrame()
		if err != nil {
			return
		}
		if h.OpCode.IsControl() {
			if err := control(h, rd); err != nil {
				return
			}
			continue
		}
		wr.ResetOp(h.OpCode)
		if msg.IsCompressed() {
			fr.Reset(rd)
			fw.Reset(wr)
			if _, err := io.Copy(fw, fr); err != nil {
				return
			}
			if err := fw.Close(); err != nil {
				return
			}
		} else if _, err := io.Copy(wr, rd); err != nil {
			return
		}
		if err := wr.Flush(); err != nil {
			return
		}
	}
}
