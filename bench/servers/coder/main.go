// Command coder is the coder/websocket v1.8.15 benchmark server, written as
// its README shows: websocket.Accept in a net/http handler, then Read and
// Write with the request's context. coder/websocket has no broadcast helper;
// its chat example gives each subscriber a buffered channel drained by the
// connection's own goroutine, which is what broadcast mode does.
package main

import (
	"context"
	"net/http"

	"github.com/coder/websocket"
	"github.com/duplexws/duplex/bench/internal/srvkit"
)

var features = srvkit.Features{Compression: true}

func main() { srvkit.Main(start, features) }

type message struct {
	typ  websocket.MessageType
	data []byte
}

type subscriber struct{ msgs chan message }

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
	if cfg.Compress {
		opts.CompressionMode = websocket.CompressionContextTakeover
	}
	room := srvkit.NewRoom[*subscriber]()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, opts)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(cfg.ReadLimit)
		ctx := r.Context()
		if cfg.Mode == srvkit.ModeBroadcast {
			broadcast(ctx, c, room)
			return
		}
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
		}
	})
	return srvkit.ServeHTTP(cfg, mux)
}

func broadcast(ctx context.Context, c *websocket.Conn, room *srvkit.Room[*subscriber]) {
	s := &subscriber{msgs: make(chan message, 256)}
	done := make(chan struct{})
	go func() { // the subscriber's writer
		defer close(done)
		for m := range s.msgs {
			if err := c.Write(ctx, m.typ, m.data); err != nil {
				c.CloseNow()
				for range s.msgs {
				}
				return
			}
		}
	}()
	room.Join(s)
	defer func() {
		room.Leave(s)
		close(s.msgs)
		<-done
	}()
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		room.Each(func(m *subscriber) { m.msgs <- message{typ, b} })
	}
}
