// Command nbio is the lesismal/nbio v1.6.8 benchmark server in its event-loop
// mode: an nbhttp.Engine with IOModNonBlocking serves HTTP and the upgraded
// websocket connections from its pollers, with no goroutine per connection
// (the shape of the author's own nbio_nonblocking benchmark server). nbio has
// no broadcast helper; its WriteMessage never blocks (it queues in the
// engine), so broadcast simply writes to every connection of the room.
package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

var features = srvkit.Features{Compression: true}

func main() { srvkit.Main(start, features) }

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	logging.SetLevel(logging.LevelError) // no start/stop chatter on stderr
	room := srvkit.NewRoom[*websocket.Conn]()
	upgrader := websocket.NewUpgrader()
	upgrader.MessageLengthLimit = int(cfg.ReadLimit)
	upgrader.EnableCompression(cfg.Compress)
	if cfg.Mode == srvkit.ModeBroadcast {
		upgrader.OnOpen(func(c *websocket.Conn) { room.Join(c) })
		upgrader.OnClose(func(c *websocket.Conn, err error) { room.Leave(c) })
		upgrader.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			room.Each(func(m *websocket.Conn) { _ = m.WriteMessage(mt, data) })
		})
	} else {
		upgrader.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			_ = c.WriteMessage(mt, data)
		})
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{}) // no idle timeout: the harness holds idle connections
	})

	addr := make(chan string, 1)
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{cfg.Addr},
		Handler:                 mux,
		IOMod:                   nbhttp.IOModNonBlocking,
		ReleaseWebsocketPayload: true,
		MaxLoad:                 1 << 20, // the default (10k) is below the idle scenario's largest N
		Listen: func(network, a string) (net.Listener, error) {
			ln, err := net.Listen(network, a)
			if err == nil {
				addr <- ln.Addr().String()
			}
			return ln, err
		},
	})
	if err := engine.Start(); err != nil {
		return nil, err
	}
	return &srvkit.Server{Addr: <-addr, Stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = engine.Shutdown(ctx)
	}}, nil
}
