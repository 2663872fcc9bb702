package chat

import (
	"context"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/duplexws/duplex/hub"
	"github.com/duplexws/duplex/websocket"
)

// maxNameLength is the longest display name, in characters.
const maxNameLength = 64

// newHub makes the hub of the multi-user chat: anyone may join with a
// display name (sent as the connect command's data {"name": ...}) and use
// any room; the name is the user and shows in presence and beside each
// message. limit is shared with the echo endpoint.
func newHub(opts Options, limit *websocket.ConnLimit, hooks websocket.ServerHooks) *hub.Hub {
	return hub.New(hub.Options{
		Broker: opts.Broker,
		WebSocket: websocket.AcceptOptions{
			OriginPatterns:   append([]string(nil), opts.OriginPatterns...),
			HandshakeTimeout: opts.HandshakeTimeout,
			Options: websocket.Options{
				PingInterval: opts.PingInterval,
				PongTimeout:  opts.PongTimeout,
			},
		},
		ShutdownCode:   opts.ShutdownCode,
		DrainWindow:    opts.DrainWindow,
		ConnLimit:      limit,
		HandshakeRate:  opts.HandshakeRate,
		Hooks:          hooks,
		ObservePublish: opts.ObservePublish,
		Logger:         opts.Logger,
		Authenticate:   authenticateByName,
		EventLoop:      opts.EventLoop,
	})
}

type connectData struct {
	Name string `json:"name"`
}

// authenticateByName takes the display name from the connect data. An event
// stream (no connect data) is anonymous.
func authenticateByName(_ context.Context, req hub.ConnectRequest) (hub.Identity, error) {
	if req.EventStream {
		return hub.Identity{}, nil // read-only and anonymous
	}
	var d connectData
	if len(req.Data) > 0 {
		if err := json.Unmarshal(req.Data, &d); err != nil {
			return hub.Identity{}, &hub.Error{Code: hub.CodeUnauthorized, Message: `connect data must be {"name": "..."}`}
		}
	}
	name := strings.TrimSpace(d.Name)
	if !validName(name) {
		return hub.Identity{}, &hub.Error{Code: hub.CodeUnauthorized, Message: "a name is 1 to 64 printable characters"}
	}
	info, _ := json.Marshal(connectData{Name: name})
	return hub.Identity{User: name, Info: info}, nil
}

func validName(name string) bool {
	n := utf8.RuneCountInString(name)
	if n == 0 || n > maxNameLength || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
