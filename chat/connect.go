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
	// s.ws tracks the connection, so that Shutdown closes it, until the
	// handler returns: the handler writes its own log lines, so that they
	// are all written when Shutdown returns.
	opened := false
	err := s.ws.Open(w, r, func(ctx context.Context, c *websocket.Conn) error {
		opened = true
		start := time.Now()
		messages := 0
		s.log.Info("websocket opened", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		// The handler returns the error that ended the loop, for Open to
		// close the connection according to it, and logs how it ended.
		fail := func(err error) error {
			end := s.classify(err)
			s.log.Info("websocket closed", "remote", r.RemoteAddr, "code", int(end.code), "reason", end.reason,
				"by", end.by, "messages", messages, "duration", time.Since(start).Round(time.Millisecond))
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
	if !opened {
		// The handshake failed or was refused (503 during shutdown); the
		// HTTP error has been written.
		var (
			he *websocket.HandshakeError
			ce *websocket.CloseError
		)
		switch {
		case errors.As(err, &he):
			s.log.Info("websocket handshake refused", "remote", r.RemoteAddr,
				"origin", r.Header.Get("Origin"), "status", he.Status, "reason", he.Message)
		case errors.As(err, &ce):
			// The handshake ended as Shutdown began: closed at once.
			s.log.Info("websocket closed at once: shutting down", "remote", r.RemoteAddr, "code", int(ce.Code))
		case err != nil:
			s.log.Info("websocket handshake failed", "remote", r.RemoteAddr, "error", err)
		}
	}
}

// closeInfo describes how a connection ended, for the log.
type closeInfo struct {
	code   websocket.StatusCode
	reason string
	by     string // "peer" or "server"
}

// classify turns the error that ended the loop (from Read, SendText or Flush)
// into a closeInfo.
func (s *Server) classify(err error) closeInfo {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Remote && s.closing.Load() && ce.Code == s.ws.ShutdownCode:
		// Shutdown sent our close frame; Read returns the peer's echo of it.
		return closeInfo{code: ce.Code, reason: s.ws.ShutdownReason, by: "server"}
	case errors.As(err, &ce):
		by := "server"
		switch {
		case ce.Remote:
			by = "peer"
		case ce.Code == websocket.StatusAbnormalClosure:
			// No close frame either way: the connection was lost (a TCP
			// reset, an HTTP/2 stream reset, a keepalive that timed out;
			// the reason says which).
			by = "network"
		}
		return closeInfo{code: ce.Code, reason: ce.Reason, by: by}
	default:
		// The connection ended without a close frame (TCP reset, EOF, ...).
		return closeInfo{code: websocket.StatusAbnormalClosure, reason: err.Error(), by: "network"}
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
