package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// ourServer is an httptest server running our websocket.Open echo handler,
// or, with events, the same echo from websocket.AcceptEvents' OnMessage (on
// Linux, read by the event loop).
//
// Query parameters: case=NAME (the observation key), mode=echo (default: Read
// then Write, with the #cmd control messages) or mode=stream (Reader copied to
// a Writer in fragBufSize chunks: our Writer sends the message fragmented; in
// the events mode the whole message is written through a Writer the same way).
type ourServer struct {
	*httptest.Server
	events bool
	obs    obsStore
	wire   *wireStats
}

func newOurServer(t *testing.T, events bool) *ourServer {
	s := &ourServer{events: events}
	s.Server, s.wire = newSniffServer(t, http.HandlerFunc(s.serve))
	return s
}

// ourServerModes are the ways our server takes connections, each suite with a
// peer as client runs against both: Open's handler reading in a loop, and
// AcceptEvents' callbacks.
var ourServerModes = []struct {
	name   string
	events bool
}{{"Open", false}, {"AcceptEvents", true}}

// url returns the ws:// URL of a connection of case name in mode.
func (s *ourServer) url(mode, name string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/?mode=" + mode + "&case=" + url.QueryEscape(name)
}

func (s *ourServer) serve(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("case")
	mode := r.URL.Query().Get("mode")
	opts := &websocket.AcceptOptions{Options: websocket.Options{
		ReadLimit:    ourReadLimit,
		WriteTimeout: opTimeout,
		CloseTimeout: 10 * time.Second,
	}}
	if s.events {
		s.serveEvents(w, r, name, mode, opts)
		return
	}
	var o obs
	err := websocket.Open(w, r, opts, func(ctx context.Context, c *websocket.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, connTimeout)
		defer cancel()
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			var err error
			if mode == "stream" {
				err = streamEchoOne(ctx, c)
			} else {
				var cmd *websocket.CloseError
				cmd, err = echoOne(ctx, c, &wg)
				if cmd != nil {
					o.note = fmt.Sprintf("closing with %d %q", cmd.Code, cmd.Reason)
					return cmd // Open closes with this code and reason
				}
			}
			if err != nil {
				o.err = err
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					o.code, o.reason = int(ce.Code), ce.Reason
				}
				return err
			}
		}
	})
	if o.err == nil && err != nil {
		o.err = err
	}
	s.obs.put(name, o)
}

// serveEvents is serve's AcceptEvents mode. OnClose's error stands for
// Read's; the close command's code is what the observation of Open's mode
// records too (Open returns the handler's CloseError).
func (s *ourServer) serveEvents(w http.ResponseWriter, r *http.Request, name, mode string, opts *websocket.AcceptOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), connTimeout)
	var wg sync.WaitGroup
	var cmd *websocket.CloseError // set by OnMessage, read by OnClose: never at once
	_, err := websocket.AcceptEvents(w, r, opts, websocket.Events{
		OnMessage: func(c *websocket.Conn, m websocket.Message) error {
			if mode == "stream" {
				return streamEcho(ctx, c, m)
			}
			var err error
			cmd, err = echoMessage(ctx, c, m, &wg)
			if cmd != nil {
				return cmd // closes with this code and reason
			}
			return err
		},
		OnClose: func(c *websocket.Conn, err error) {
			cancel()
			wg.Wait()
			o := obs{err: err}
			if cmd != nil {
				o.err, o.note = cmd, fmt.Sprintf("closing with %d %q", cmd.Code, cmd.Reason)
			}
			var ce *websocket.CloseError
			if errors.As(o.err, &ce) {
				o.code, o.reason = int(ce.Code), ce.Reason
			}
			s.obs.put(name, o)
		},
	})
	if err != nil {
		cancel()
		s.obs.put(name, obs{err: err})
	}
}

// streamEcho writes m back through a Writer in fragBufSize chunks: the
// events mode's stream echo.
func streamEcho(ctx context.Context, c *websocket.Conn, m websocket.Message) error {
	w, err := c.Writer(ctx, m.Type)
	if err != nil {
		return err
	}
	for b := m.Data; len(b) > 0; b = b[min(len(b), fragBufSize):] {
		if _, err := w.Write(b[:min(len(b), fragBufSize)]); err != nil {
			return err
		}
	}
	return w.Close()
}

// echoOne reads one message and echoes it, or runs the control command it holds.
func echoOne(ctx context.Context, c *websocket.Conn, wg *sync.WaitGroup) (*websocket.CloseError, error) {
	m, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	return echoMessage(ctx, c, m, wg)
}

// echoMessage echoes m, or runs the control command it holds.
func echoMessage(ctx context.Context, c *websocket.Conn, m websocket.Message, wg *sync.WaitGroup) (*websocket.CloseError, error) {
	if m.Type == websocket.MessageText {
		if cmd, code, reason, ok := parseCmd(m.Data); ok {
			switch cmd {
			case "close":
				return &websocket.CloseError{Code: websocket.StatusCode(code), Reason: reason}, nil
			case "ping":
				// Ping needs a concurrent Read (or the event loop): the
				// loop goes on reading.
				wg.Add(1)
				go func() {
					defer wg.Done()
					pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					reply := "#ok ping"
					if err := c.Ping(pctx); err != nil {
						reply = "#err ping: " + err.Error()
					}
					_ = c.Write(ctx, websocket.MessageText, []byte(reply))
				}()
				return nil, nil
			}
		}
	}
	return nil, c.Write(ctx, m.Type, m.Data)
}

// streamEchoOne copies one message from a Reader to a Writer in fragBufSize chunks.
func streamEchoOne(ctx context.Context, c *websocket.Conn) error {
	typ, r, err := c.Reader(ctx)
	if err != nil {
		return err
	}
	w, err := c.Writer(ctx, typ)
	if err != nil {
		return err
	}
	buf := make([]byte, fragBufSize)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	return w.Close()
}
