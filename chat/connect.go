package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// reply is what /chat/connect sends back: Text for an echo, Error when the
// message could not be understood.
type reply struct {
	Text  *string `json:"text,omitempty"`
	Error string  `json:"error,omitempty"`
}

// connect is the /chat/connect endpoint: the guide's read, send_text, flush loop.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	lc := &liveConn{cancel: cancel}
	if !s.track(lc) {
		w.Header().Set("Connection", "close")
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.untrack(lc)
	// Shutdown cancels this context; Open then closes the connection with 1001.
	r = r.WithContext(ctx)

	var (
		opened   time.Time
		messages int
		end      closeInfo
	)
	err := websocket.Open(w, r, &s.accept, func(ctx context.Context, c *websocket.Conn) error {
		opened = time.Now()
		s.setConn(lc, c)
		s.log.Info("websocket opened", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		// end records how the loop ended; the handler returns what Open needs.
		fail := func(err error) error {
			end = s.classify(err)
			if end.wrap != nil {
				return end.wrap
			}
			return err
		}
		for {
			msg, err := c.Read(ctx)
			if err != nil {
				return fail(err)
			}
			messages++
			if err := c.SendText(answer(msg.Data)); err != nil {
				return fail(err)
			}
			if err := c.Flush(); err != nil {
				return fail(err)
			}
		}
	})
	if opened.IsZero() {
		// The handshake failed; Open has written the HTTP error.
		var he *websocket.HandshakeError
		if errors.As(err, &he) {
			s.log.Info("websocket handshake refused", "remote", r.RemoteAddr,
				"origin", r.Header.Get("Origin"), "status", he.Status, "reason", he.Message)
		} else if err != nil {
			s.log.Info("websocket handshake failed", "remote", r.RemoteAddr, "error", err)
		}
		return
	}
	s.log.Info("websocket closed", "remote", r.RemoteAddr, "code", int(end.code), "reason", end.reason,
		"by", end.by, "messages", messages, "duration", time.Since(opened).Round(time.Millisecond))
}

// closeInfo describes how a connection ended, for the log, and what the
// handler returns to Open.
type closeInfo struct {
	code   websocket.StatusCode
	reason string
	by     string // "peer" or "server"
	wrap   error  // when non-nil, the handler returns this instead of Read's error
}

// classify turns the error that ended the loop (from Read, SendText or Flush)
// into a closeInfo.
func (s *Server) classify(err error) closeInfo {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		by := "server"
		if ce.Remote {
			by = "peer"
		}
		return closeInfo{code: ce.Code, reason: ce.Reason, by: by}
	case s.isClosing():
		// Our Shutdown cancelled the context. Open closes with 1001 when the
		// request context is cancelled; say so explicitly all the same.
		goingAway := &websocket.CloseError{Code: websocket.StatusGoingAway, Reason: "going away"}
		return closeInfo{code: goingAway.Code, reason: goingAway.Reason, by: "server", wrap: goingAway}
	default:
		// The connection ended without a close frame (TCP reset, EOF, ...).
		return closeInfo{code: websocket.StatusAbnormalClosure, reason: err.Error(), by: "peer"}
	}
}

// answer builds the reply to one message: {"text": "Echo: <text>"}, or
// {"error": "<what was wrong>"} when the message is not a JSON object with a
// string "text".
func answer(data []byte) []byte {
	text, err := parse(data)
	var r reply
	if err != nil {
		r.Error = err.Error()
	} else {
		echo := "Echo: " + text
		r.Text = &echo
	}
	out, err := json.Marshal(r)
	if err != nil { // cannot happen: strings always marshal
		return []byte(`{"error":"internal error"}`)
	}
	return out
}

// parse returns the "text" of a chat message.
func parse(data []byte) (string, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return "", fmt.Errorf("message is not valid JSON: %v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf(`message must be a JSON object like {"text": "..."}, not %s`, jsonKind(v))
	}
	field, ok := obj["text"]
	if !ok {
		return "", errors.New(`message has no "text" field`)
	}
	text, ok := field.(string)
	if !ok {
		return "", fmt.Errorf(`"text" must be a string, not %s`, jsonKind(field))
	}
	return text, nil
}

// jsonKind names the JSON type of a value decoded into an any.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
