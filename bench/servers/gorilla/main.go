// Command gorilla is the gorilla/websocket v1.5.3 benchmark server, written
// as its examples do: an Upgrader, ReadMessage/WriteMessage in the handler
// goroutine for echo (examples/echo), and for broadcast the chat example's
// shape (one writer goroutine per client fed by a channel) with the library's
// broadcast helper, PreparedMessage, so the frame is built once for all.
package main

import (
	"net/http"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/gorilla/websocket"
)

var features = srvkit.Features{Compression: true}

func main() { srvkit.Main(start, features) }

type client struct {
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
}

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	upgrader := websocket.Upgrader{EnableCompression: cfg.Compress}
	room := srvkit.NewRoom[*client]()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadLimit(cfg.ReadLimit)
		if cfg.Mode == srvkit.ModeBroadcast {
			broadcast(c, room)
			return
		}
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	return srvkit.ServeHTTP(cfg, mux)
}

func broadcast(c *websocket.Conn, room *srvkit.Room[*client]) {
	cl := &client{conn: c, send: make(chan *websocket.PreparedMessage, 256)}
	done := make(chan struct{})
	go func() { // writePump
		defer close(done)
		for pm := range cl.send {
			if err := c.WritePreparedMessage(pm); err != nil {
				c.Close()
				for range cl.send {
				}
				return
			}
		}
	}()
	room.Join(cl)
	defer func() {
		room.Leave(cl)
		close(cl.send)
		<-done
	}()
	for { // readPump
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		pm, err := websocket.NewPreparedMessage(mt, msg)
		if err != nil {
			return
		}
		room.Each(func(m *client) { m.send <- pm })
	}
}
