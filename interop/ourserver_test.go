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

// ourServer is an httptest server running our websocket.Open echo handler.
//
// Query parameters: case=NAME (the observation key), mode=echo (default: Read
// then Write, with the #cmd control messages) or mode=stream (Reader copied to
// a Writer in fragBufSize chunks: our Writer sends the message fragmented).
type ourServer struct {
	*httptest.Server
	obs  obsStore
	wire *wireStats
}

func newOurServer(t *testing.T) *ourServer {
	s := &ourServer{}
	s.Server, s.wire = newSniffServer(t, http.HandlerFunc(s.serve))
	return s
}

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

// echoOne reads one message and echoes it, or runs the control command it holds.
func echoOne(ctx context.Context, c *websocket.Conn, wg *sync.WaitGroup) (*websocket.CloseError, error) {
	m, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if m.Type == websocket.MessageText {
		if cmd, code, reason, ok := parseCmd(m.Data); ok {
			switch cmd {
			case "close":
				return &websocket.CloseError{Code: websocket.StatusCode(code), Reason: reason}, nil
			case "ping":
				// Ping needs a concurrent Read: the loop goes on reading.
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
