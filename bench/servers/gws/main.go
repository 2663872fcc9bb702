// Command gws is the lxzan/gws benchmark server, written as the README's
// "Best Practice": a gws.Upgrader with an event handler, Upgrade in a net/http
// handler and ReadLoop in its own goroutine, echo in OnMessage. Broadcast uses
// the library's helper, gws.Broadcaster, which frames (and would compress)
// the message once for all receivers.
//
// Two departures from the README, both on purpose: ParallelEnabled stays off
// (parallel processing may reorder an echo stream; the harness pipelines
// messages), and no read deadline is set in OnOpen, because the idle-memory
// scenario holds silent connections for longer than the README's ping
// interval.
package main

import (
	"net/http"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/lxzan/gws"
)

var features = srvkit.Features{Compression: true}

func main() { srvkit.Main(start, features) }

type handler struct {
	gws.BuiltinEventHandler
	broadcast bool
	room      *srvkit.Room[*gws.Conn]
}

func (h *handler) OnOpen(socket *gws.Conn) {
	if h.broadcast {
		h.room.Join(socket)
	}
}

func (h *handler) OnClose(socket *gws.Conn, err error) {
	if h.broadcast {
		h.room.Leave(socket)
	}
}

func (h *handler) OnPing(socket *gws.Conn, payload []byte) {
	_ = socket.WritePong(payload)
}

func (h *handler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	if h.broadcast {
		b := gws.NewBroadcaster(message.Opcode, message.Bytes())
		h.room.Each(func(c *gws.Conn) { _ = b.Broadcast(c) })
		_ = b.Close()
		return
	}
	_ = socket.WriteMessage(message.Opcode, message.Bytes())
}

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	h := &handler{broadcast: cfg.Mode == srvkit.ModeBroadcast, room: srvkit.NewRoom[*gws.Conn]()}
	upgrader := gws.NewUpgrader(h, &gws.ServerOption{
		Recovery:           gws.Recovery,
		ReadMaxPayloadSize: int(cfg.ReadLimit),
		PermessageDeflate:  gws.PermessageDeflate{Enabled: cfg.Compress},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		go func() {
			socket.ReadLoop() // blocking prevents the context from being GC'd (README)
		}()
	})
	return srvkit.ServeHTTP(cfg, mux)
}
