// Command hub is package hub (rooms, history, recovery, presence, bounded
// send queues, over the wire protocol of hub/PROTOCOL.md) as a benchmark
// server, for the hub-broadcast scenario. Broadcast only.
//
// Subscribers speak the hub's protocol on /ws (connect, then subscribe). The
// publisher is not a hub client: it opens /pub?room=NAME, a plain WebSocket,
// and every message it sends is published to the room with the server-side
// Hub.Publish, as an application publishes (so a client's publish rate limit,
// authorization and reply do not enter); the message must be a JSON value.
// The hub then does what it does for any publication: the memory broker
// appends it to the room's history and hands it to the hub's room, which
// encodes the pub push once, frames it once (websocket.PreparedMessage) and
// queues it on every subscriber's bounded queue, each written by the
// session's writer goroutine.
//
// Options are the defaults (hub.Options{}): the send queue bounds (1 MiB,
// 4096 messages) are far above what a run queues per connection (W messages
// of under 200 bytes), and the publish rate limit is per client connection,
// which Hub.Publish does not go through.
package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

var features = srvkit.Features{}

func main() { srvkit.Main(start, features) }

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	if cfg.Mode != srvkit.ModeBroadcast {
		return nil, errors.New("the hub server only broadcasts (-mode broadcast)")
	}
	h := hub.New(hub.Options{})
	pubOpts := &websocket.AcceptOptions{Options: websocket.Options{ReadLimit: cfg.ReadLimit}}
	mux := http.NewServeMux()
	mux.Handle("/ws", h)
	mux.HandleFunc("/pub", func(w http.ResponseWriter, r *http.Request) {
		room := r.URL.Query().Get("room")
		_ = websocket.Open(w, r, pubOpts, func(ctx context.Context, c *websocket.Conn) error {
			for {
				msg, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if _, err := h.Publish(ctx, room, msg.Data); err != nil {
					return err
				}
			}
		})
	})
	srv, err := srvkit.ServeHTTP(cfg, mux)
	if err != nil {
		return nil, err
	}
	stop := srv.Stop
	srv.Stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = h.Shutdown(ctx)
		cancel()
		stop()
	}
	return srv, nil
}
