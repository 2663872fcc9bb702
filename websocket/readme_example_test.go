package websocket_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

// readmeEcho is the echo handler of the README's server example, copied
// word for word (TestREADMEExampleIsTested in docs_consistency_test.go
// checks it), so that the README shows code that compiles and is run.
func readmeEcho(w http.ResponseWriter, r *http.Request) {
	websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
		var buf []byte // reused for every message: the loop allocates nothing per message
		for {
			msg, err := c.ReadInto(ctx, buf) // one whole message; pings and closes are handled inside
			if err != nil {
				return err // a close by the peer ends the loop quietly
			}
			buf = msg.Data // the next ReadInto overwrites it; Read returns data you keep

			if msg.Type == websocket.MessageText { // answer with the message's own type
				err = c.SendText(msg.Data) // buffered
			} else {
				err = c.SendBinary(msg.Data)
			}
			if err != nil {
				return err
			}
			if c.MessageReady() { // the next message is here already: answer it before writing
				continue
			}
			if err := c.Flush(); err != nil { // many sends, one write
				return err
			}
		}
	})
}

// TestREADMEExampleEchoesEachType runs the README's echo handler and
// checks that each message comes back with its own type and data. A
// binary message that is not UTF-8 is the case that an echo answering
// everything as text fails: the client then closes with 1007.
func TestREADMEExampleEchoesEachType(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(readmeEcho))
	defer srv.Close()
	ctx := testCtx(t)
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	messages := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello")},
		{websocket.MessageBinary, []byte{0xff, 0xfe, 0x00, 0x80}}, // not UTF-8
		{websocket.MessageBinary, []byte{}},
		// Above the compression threshold: compressed both ways.
		{websocket.MessageText, bytes.Repeat([]byte("compressed text "), 32)},
		{websocket.MessageBinary, bytes.Repeat([]byte{0xc3, 0x28}, 256)},
	}
	for _, m := range messages {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatalf("writing a %v message: %v", m.typ, err)
		}
		got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading the echo of a %v message of %d bytes: %v", m.typ, len(m.data), err)
		}
		if got.Type != m.typ || !bytes.Equal(got.Data, m.data) {
			t.Errorf("sent %v %q, got back %v %q", m.typ, m.data, got.Type, got.Data)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}
