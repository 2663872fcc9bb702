package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/duplexws/duplex/websocket"
)

// Subprotocol is the WebSocket subprotocol of the hub's wire protocol,
// version 1 in JSON (PROTOCOL.md in this package's directory).
const Subprotocol = "duplex.v1.json"

// command is a client's command; which fields matter depends on Op.
type command struct {
	ID        uint64          `json:"id"`
	Op        string          `json:"op"`
	Token     string          `json:"token"`
	Data      json.RawMessage `json:"data"`
	Room      string          `json:"room"`
	Since     *Position       `json:"since"`
	Recent    int             `json:"recent"`
	Presence  bool            `json:"presence"`
	Key       string          `json:"key"`
	Limit     *int            `json:"limit"`
	Reverse   bool            `json:"reverse"`
	StatsOnly bool            `json:"stats_only"`
}

// Error is a refusal that a reply carries to the client: an HTTP-like code
// and a message for people. The hooks of Options may return one to choose
// what the client is told; other errors become a generic message.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("hub: %d %s", e.Code, e.Message) }

// Reply error codes (PROTOCOL.md, "Errors in replies").
const (
	CodeBadRequest    = 400
	CodeUnauthorized  = 401
	CodeForbidden     = 403
	CodeConflict      = 409
	CodeGone          = 410
	CodeTooLarge      = 413
	CodeRateLimited   = 429
	CodeUnavailable   = 503
	codeInternalError = 500
)

// asError turns err into the Error a reply carries; def is the code of an
// error that is not already an *Error, whose text is not shown to the client.
func asError(err error, def int, msg string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: def, Message: msg}
}

type reply struct {
	ID     uint64 `json:"id"`
	Result any    `json:"result,omitempty"`
	Error  *Error `json:"error,omitempty"`
}

type connectResult struct {
	Client  string `json:"client"`
	User    string `json:"user"`
	Version int    `json:"version"`
}

type subscribeResult struct {
	Room         string            `json:"room"`
	Position     Position          `json:"position"`
	Recovered    *bool             `json:"recovered,omitempty"`
	Publications []json.RawMessage `json:"publications"`
	Presence     []ClientInfo      `json:"presence,omitempty"`
}

type publishResult struct {
	Position Position `json:"position"`
}

type historyResult struct {
	Position     Position          `json:"position"`
	Publications []json.RawMessage `json:"publications"`
}

type presenceResult struct {
	Clients []ClientInfo  `json:"clients,omitempty"`
	Stats   PresenceStats `json:"stats"`
}

// wirePub is a publication on the wire: the pub push, and (without Push)
// the entries of publications arrays.
type wirePub struct {
	Push   string          `json:"push,omitempty"`
	Room   string          `json:"room"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Time   int64           `json:"time"`
	From   *ClientInfo     `json:"from,omitempty"`
	Data   json.RawMessage `json:"data"`
}

func encodePub(p *Publication, push bool) []byte {
	w := wirePub{Room: p.Room, Offset: p.Offset, Epoch: p.Epoch, Time: p.Time.UnixMilli(), From: p.From, Data: p.Data}
	if push {
		w.Push = "pub"
	}
	if len(w.Data) == 0 {
		w.Data = json.RawMessage("null")
	}
	b, err := json.Marshal(w)
	if err != nil {
		// Data was checked with json.Valid when it was published; a
		// broker that hands back something else is broken.
		b, _ = json.Marshal(wirePub{Push: w.Push, Room: p.Room, Offset: p.Offset, Epoch: p.Epoch, Time: w.Time, Data: json.RawMessage("null")})
	}
	return b
}

func encodePubs(ps []Publication) []json.RawMessage {
	out := make([]json.RawMessage, len(ps))
	for i := range ps {
		out[i] = encodePub(&ps[i], false)
	}
	return out
}

type presencePush struct {
	Push   string     `json:"push"`
	Room   string     `json:"room"`
	Client ClientInfo `json:"client"`
}

type disconnectPush struct {
	Push      string `json:"push"`
	Code      int    `json:"code"`
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

// disconnectMessage is the disconnect push for a close with code. Its
// reconnect flag follows from the code, as PROTOCOL.md's close-code table
// says: a client reconnects after anything but a bad request or a refused
// connect.
func disconnectMessage(code websocket.StatusCode, reason string) []byte {
	reconnect := code != CloseBadRequest && code != CloseUnauthorized
	msg, _ := json.Marshal(disconnectPush{Push: "disconnect", Code: int(code), Reason: reason, Reconnect: reconnect})
	return msg
}

// parseCommand decodes one message of a client: a command is a text message
// holding a JSON object with a positive id and an op.
func parseCommand(msg websocket.Message) (command, bool) {
	var cmd command
	if msg.Type != websocket.MessageText || json.Unmarshal(msg.Data, &cmd) != nil || cmd.ID == 0 || cmd.Op == "" {
		return command{}, false
	}
	return cmd, true
}

// errNotACommand is the reason of the close for a message parseCommand
// refuses.
const errNotACommand = "a command is a text message holding a JSON object with a positive id and an op"

// maxRoomName is the longest room name, in bytes.
const maxRoomName = 256

// validRoom reports whether name may name a room: 1 to 256 bytes of UTF-8
// without control characters.
func validRoom(name string) bool {
	if name == "" || len(name) > maxRoomName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
