package websocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/duplexws/duplex/websocket"
)

type chatMessage struct {
	Text string `json:"text"`
}

// The guide's chat loop with the JSON functions: ReadJSON, SendJSON and
// Flush on the server, WriteJSON and ReadJSON on the client.
func TestJSONRoundTrip(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		for {
			var in chatMessage
			if err := websocket.ReadJSON(ctx, c, &in); err != nil {
				return err
			}
			websocket.SendJSON(c, chatMessage{Text: "Echo: " + in.Text})
			if err := c.Flush(); err != nil {
				return err
			}
		}
	})
	c := wsDial(t, url, nil)
	for _, s := range []string{"hello", "", "<é & ü>", strings.Repeat("x", 1<<20)} {
		if err := websocket.WriteJSON(ctx, c, chatMessage{Text: s}); err != nil {
			t.Fatal(err)
		}
		var out chatMessage
		if err := websocket.ReadJSON(ctx, c, &out); err != nil {
			t.Fatal(err)
		}
		if out.Text != "Echo: "+s {
			t.Fatalf("got %.40q, want %.40q", out.Text, "Echo: "+s)
		}
	}
	// What went over the wire is plain JSON text, without a newline.
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"text":"raw"}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := c.Read(ctx)
	if err != nil || msg.Type != websocket.MessageText || string(msg.Data) != `{"text":"Echo: raw"}` {
		t.Fatalf("read %v %q, %v", msg.Type, msg.Data, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	// The server's ReadJSON returned the close, which matches io.EOF.
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("Open: %v", err)
	}
}

// A message that does not decode is a *JSONError that leaves the
// connection open; the next message decodes.
func TestReadJSONBadMessages(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	type binary struct{}
	msgs := []any{
		`{"text": "a"`,              // ends inside the value
		`not json`,                  // syntax
		`{"text": 42}`,              // wrong shape
		``,                          // empty
		`{"text":"a"} {"text":"b"}`, // two values
		binary{},                    // a binary message holding JSON: fine
		" {\"text\":\"spaced\"} \r\n\t",
	}
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		for _, m := range msgs {
			var err error
			switch m := m.(type) {
			case string:
				err = c.Write(ctx, websocket.MessageText, []byte(m))
			case binary:
				err = c.Write(ctx, websocket.MessageBinary, []byte(`{"text":"binary"}`))
			}
			if err != nil {
				return err
			}
		}
		_, err := c.Read(ctx)
		return err
	})
	c := wsDial(t, url, nil)
	var v chatMessage
	var je *websocket.JSONError

	err := websocket.ReadJSON(ctx, c, &v)
	if !errors.As(err, &je) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	err = websocket.ReadJSON(ctx, c, &v)
	var se *json.SyntaxError
	if !errors.As(err, &je) || !errors.As(err, &se) {
		t.Fatalf("syntax: %v", err)
	}
	err = websocket.ReadJSON(ctx, c, &v)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &je) || !errors.As(err, &te) {
		t.Fatalf("type: %v", err)
	}
	err = websocket.ReadJSON(ctx, c, &v)
	if !errors.As(err, &je) || errors.Is(err, io.EOF) {
		t.Fatalf("empty: %v, want a JSONError that is not io.EOF", err)
	}
	err = websocket.ReadJSON(ctx, c, &v)
	if !errors.As(err, &je) {
		t.Fatalf("two values: %v", err)
	}
	for _, want := range []string{"binary", "spaced"} {
		v = chatMessage{}
		if err := websocket.ReadJSON(ctx, c, &v); err != nil || v.Text != want {
			t.Fatalf("read %q, %v; want %q", v.Text, err, want)
		}
	}
}

// Connection errors are not JSONErrors: a message over the read limit
// fails the connection with 1009 as Read does.
func TestReadJSONConnectionErrors(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"text":"`+strings.Repeat("x", 2000)+`"}`)); err != nil {
			return err
		}
		_, err := c.Read(ctx)
		return err
	})
	c := wsDial(t, url, &websocket.DialOptions{Options: websocket.Options{ReadLimit: 1000}})
	var v chatMessage
	err := websocket.ReadJSON(ctx, c, &v)
	var ce *websocket.CloseError
	var je *websocket.JSONError
	if errors.As(err, &je) || !errors.As(err, &ce) || ce.Code != websocket.StatusMessageTooBig {
		t.Fatalf("over the limit: %v, want a 1009 CloseError", err)
	}
}

// A value that cannot be encoded is a *JSONError and sends nothing.
func TestWriteJSONUnencodable(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	got := make(chan string, 1)
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		got <- string(msg.Data)
		_, err = c.Read(ctx)
		return err
	})
	c := wsDial(t, url, nil)
	var je *websocket.JSONError
	var ue *json.UnsupportedTypeError
	if err := websocket.WriteJSON(ctx, c, make(chan int)); !errors.As(err, &je) || !errors.As(err, &ue) {
		t.Fatalf("WriteJSON(chan): %v", err)
	}
	if err := websocket.SendJSON(c, map[string]any{"f": func() {}}); !errors.As(err, &je) {
		t.Fatalf("SendJSON(func): %v", err)
	}
	if err := websocket.SendJSON(c, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if s := recv(t, ctx, got); s != "[1,2]" {
		t.Fatalf("server got %q, want only [1,2]", s)
	}
}
