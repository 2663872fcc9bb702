package websocket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoServer serves an Open echo handler and returns its ws:// URL.
func echoServer(t *testing.T, opts *AcceptOptions) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Open(w, r, opts, func(ctx context.Context, c *Conn) error {
			for {
				msg, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if msg.Type == MessageText {
					c.SendText(msg.Data)
				} else {
					c.SendBinary(msg.Data)
				}
				if err := c.Flush(); err != nil {
					return err
				}
			}
		})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestEchoRoundTrip(t *testing.T) {
	url := echoServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		for _, typ := range []MessageType{MessageText, MessageBinary} {
			p := bytes.Repeat([]byte("é"), n/2)
			if err := c.Write(ctx, typ, p); err != nil {
				t.Fatalf("write %d: %v", n, err)
			}
			msg, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read %d: %v", n, err)
			}
			if msg.Type != typ || !bytes.Equal(msg.Data, p) {
				t.Fatalf("echo of %d %v bytes: got %v %d bytes", len(p), typ, msg.Type, len(msg.Data))
			}
		}
	}
	// A fragmented message through Writer, read back whole.
	w, err := c.Writer(ctx, MessageText)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("fragment ", 10000)
	io.Copy(w, strings.NewReader(want))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	typ, r, err := c.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || typ != MessageText || string(got) != want {
		t.Fatalf("fragmented echo: %v %v %d bytes", err, typ, len(got))
	}
	// Ping needs a concurrent reader.
	done := make(chan error, 1)
	go func() { _, err := c.Read(ctx); done <- err }()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	err = <-done
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusNormalClosure || !errors.Is(err, io.EOF) {
		t.Fatalf("read after close: %v", err)
	}
}
