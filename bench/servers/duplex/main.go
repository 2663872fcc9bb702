// Command duplex is our own benchmark server, written as the design notes'
// smallest use: websocket.Open in a net/http handler, a loop that reads a
// whole message with ReadInto (reusing its buffer, as the README's echo
// does), sends it back (buffered) and Flushes when no further message has
// arrived already (MessageReady). Broadcast frames each message once
// (NewPreparedMessage, as the package doc advises for fan-out) and sends it
// to each subscriber as subscriber.go describes: the publisher itself
// queues it in every subscriber nothing else is writing to (SendPrepared)
// and Flushes them one by one, reading first a further message that has
// arrived meanwhile (MessageReady), as the echo does; a subscriber being
// written to gets it through its own queue, drained by its writer goroutine
// ("many sends, one syscall"). No goroutine is woken per delivery.
//
// Compression: Duplex accepts permessage-deflate by default; here it is off
// unless the harness asks (-compress), like the peers. With -compress the
// replies are compressed whatever their type (Binary: true), as the peers do:
// the load generator sends binary messages. -variant nocontext adds
// NoContextTakeover (the deflate-idle scenario's second Duplex column).
//
// -variant events (echo) serves each connection with AcceptEvents: echoEvent
// runs from the event loop's workers, and an idle connection has no
// goroutine.
//
// -variant prepared (broadcast only) is the raw prepared-message loop, the
// hub-broadcast scenario's baseline for package hub: the publisher's reading
// goroutine frames each message once with NewPreparedMessage and writes it
// to every connection in turn with WritePrepared (one write and flush per
// connection, no queue, no goroutine per subscriber).
package main

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/duplexws/duplex/bench/internal/srvkit"
	"github.com/duplexws/duplex/websocket"
)

var features = srvkit.Features{Compression: true, Variants: []string{"accept", "events", "nocontext", "prepared"}}

func main() { srvkit.Main(start, features) }

func start(cfg srvkit.Config) (*srvkit.Server, error) {
	compression := &websocket.CompressionOptions{Disabled: true}
	if cfg.Compress {
		compression = &websocket.CompressionOptions{Binary: true}
		if cfg.Variant == "nocontext" { // no context takeover on the server's side
			compression.NoContextTakeover = true
		}
	}
	opts := &websocket.AcceptOptions{Options: websocket.Options{ReadLimit: cfg.ReadLimit, Compression: compression}}
	room := srvkit.NewRoom[*subscriber]()
	mux := http.NewServeMux()
	conns := srvkit.NewRoom[*websocket.Conn]()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Mode == srvkit.ModeBroadcast && cfg.Variant == "prepared" {
			_ = websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
				return broadcastPrepared(ctx, c, conns)
			})
			return
		}
		if cfg.Mode == srvkit.ModeBroadcast {
			_ = websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
				return broadcast(ctx, c, room)
			})
			return
		}
		if cfg.Variant == "accept" { // Accept, then serve from a new goroutine: net/http's goroutine ends
			c, err := websocket.Accept(w, r, opts)
			if err != nil {
				return
			}
			go func() {
				err := echo(context.Background(), c)
				if errors.Is(err, io.EOF) {
					_ = c.Close(websocket.StatusNormalClosure, "")
					return
				}
				_ = c.CloseNow()
			}()
			return
		}
		if cfg.Variant == "events" { // AcceptEvents: no goroutine while idle (Linux event loop)
			_, _ = websocket.AcceptEvents(w, r, opts, websocket.Events{OnMessage: echoEvent})
			return
		}
		_ = websocket.Open(w, r, opts, echo)
	})
	return srvkit.ServeHTTP(cfg, mux)
}

func echo(ctx context.Context, c *websocket.Conn) error {
	var buf []byte // reused for every message, as the README's echo does
	for {
		msg, err := c.ReadInto(ctx, buf)
		if err != nil {
			return err
		}
		buf = msg.Data
		if err := send(c, msg); err != nil {
			return err
		}
		if c.MessageReady() { // as the README's echo: one write for what arrived together
			continue
		}
		if err := c.Flush(); err != nil {
			return err
		}
	}
}

// echoEvent is echo's body for -variant events: OnMessage sends the message
// back (msg.Data is copied into the write buffer before it returns) and
// flushes unless the next message is already in, as the goroutine modes do.
func echoEvent(c *websocket.Conn, msg websocket.Message) error {
	if err := send(c, msg); err != nil || c.MessageReady() {
		return err
	}
	return c.Flush()
}

func send(c *websocket.Conn, msg websocket.Message) error {
	if msg.Type == websocket.MessageText {
		return c.SendText(msg.Data)
	}
	return c.SendBinary(msg.Data)
}

func broadcast(ctx context.Context, c *websocket.Conn, room *srvkit.Room[*subscriber]) error {
	s := newSubscriber(c)
	room.Join(s)
	defer func() {
		room.Leave(s)
		s.leave()
	}()
	var buf []byte
	var b batch
	defer b.flush()
	for {
		msg, err := c.ReadInto(ctx, buf)
		if err != nil {
			return err
		}
		buf = msg.Data
		// Framed once for every subscriber, as the package doc advises
		// for fan-out; it copies msg.Data, so buf can be reused.
		pm := websocket.NewPreparedMessage(msg.Type, msg.Data)
		if len(b.pending) == 0 && !c.MessageReady() {
			// Nothing to send with it: each subscriber is sent the message
			// and flushed at once, in one pass, so that one write buffer
			// goes from subscriber to subscriber instead of one per
			// subscriber being held until a batch's flush. Should a further
			// message arrive meanwhile, the rest of the pass is only sent
			// to, and the next message joins it in one write (below).
			sent, batching := 0, false
			room.Each(func(m *subscriber) {
				m.send(pm, &b)
				if batching {
					return
				}
				if sent++; sent%minFlushes == 0 && c.MessageReady() {
					batching = true
					return
				}
				b.flush()
			})
			continue
		}
		room.Each(func(m *subscriber) { m.send(pm, &b) })
		// As the echo: a message that has arrived meanwhile is read and
		// sent before the subscribers not yet flushed are.
		b.flushUnless(c.MessageReady)
	}
}

// broadcastPrepared is -variant prepared: each message is framed once and
// written to every connection from the publisher's goroutine.
func broadcastPrepared(ctx context.Context, c *websocket.Conn, room *srvkit.Room[*websocket.Conn]) error {
	room.Join(c)
	defer room.Leave(c)
	for {
		msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		pm := websocket.NewPreparedMessage(msg.Type, msg.Data)
		room.Each(func(m *websocket.Conn) { _ = m.WritePrepared(ctx, pm) })
	}
}
