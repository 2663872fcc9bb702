// Command duplex is our own benchmark server, written as the design notes'
// smallest use: websocket.Open in a net/http handler, a loop that Reads a
// whole message, sends it back (buffered) and Flushes. Broadcast gives every
// connection a buffered channel drained by a writer goroutine that sends all
// it finds queued and then Flushes once ("many sends, one syscall").
//
// Compression: the websocket package has no permessage-deflate option yet, so
// the server reports it unsupported and the harness prints "n/a".
package main

import (
	"context"
	"net/http"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/duplexws/duplex/websocket"
)

var features = srvkit.Features{Compression: false}

func main() { srvkit.Main(start, features) }

type subscriber struct{ msgs chan websocket.Message }

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	opts := &websocket.AcceptOptions{Options: websocket.Options{ReadLimit: cfg.ReadLimit}}
	room := srvkit.NewRoom[*subscriber]()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Mode == srvkit.ModeBroadcast {
			_ = websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
				return broadcast(ctx, c, room)
			})
			return
		}
		_ = websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
			for {
				msg, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if err := send(c, msg); err != nil {
					return err
				}
				if err := c.Flush(); err != nil {
					return err
				}
			}
		})
	})
	return srvkit.ServeHTTP(cfg, mux)
}

func send(c *websocket.Conn, msg websocket.Message) error {
	if msg.Type == websocket.MessageText {
		return c.SendText(msg.Data)
	}
	return c.SendBinary(msg.Data)
}

func broadcast(ctx context.Context, c *websocket.Conn, room *srvkit.Room[*subscriber]) error {
	s := &subscriber{msgs: make(chan websocket.Message, 256)}
	done := make(chan struct{})
	go func() { // the subscriber's writer
		defer close(done)
		for m := range s.msgs {
			err := send(c, m)
			for more := len(s.msgs); err == nil && more > 0; more-- {
				err = send(c, <-s.msgs)
			}
			if err == nil {
				err = c.Flush()
			}
			if err != nil {
				_ = c.CloseNow()
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
		msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		room.Each(func(m *subscriber) { m.msgs <- msg })
	}
}
