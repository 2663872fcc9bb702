package websocket_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// The guide's chat speaks JSON {"text": ...}. ReadJSON decodes a message
// as it arrives; SendJSON queues the answer for Flush. A message that is
// not the JSON expected is a *JSONError and the connection stays open, so
// the server can say what it wanted and go on.
func ExampleReadJSON() {
	type chat struct {
		Text string `json:"text"`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			for {
				var in chat
				err := websocket.ReadJSON(ctx, c, &in)
				var bad *websocket.JSONError
				switch {
				case errors.As(err, &bad):
					websocket.SendJSON(c, map[string]string{"error": `expected {"text": ...}`})
				case err != nil:
					return err // a normal close ends the loop quietly
				default:
					websocket.SendJSON(c, chat{Text: "Echo: " + in.Text})
				}
				if err := c.Flush(); err != nil {
					return err
				}
			}
		})
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(websocket.StatusNormalClosure, "")

	if err := websocket.WriteJSON(ctx, c, chat{Text: "hello"}); err != nil {
		log.Fatal(err)
	}
	var reply chat
	if err := websocket.ReadJSON(ctx, c, &reply); err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.Text)

	if err := c.Write(ctx, websocket.MessageText, []byte("hello?")); err != nil {
		log.Fatal(err)
	}
	var complaint map[string]string
	if err := websocket.ReadJSON(ctx, c, &complaint); err != nil {
		log.Fatal(err)
	}
	fmt.Println(complaint["error"])
	// Output:
	// Echo: hello
	// expected {"text": ...}
}

// A server that only pushes still needs a reader, to answer pings and to
// notice that the client left: CloseRead runs one, and its context ends
// the push loop when the connection closes.
func ExampleConn_CloseRead() {
	stopped := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			ctx = c.CloseRead(ctx)
			for i := 1; ; i++ {
				if i <= 3 {
					msg := fmt.Sprintf("update %d", i)
					if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
						return err
					}
					continue
				}
				// A real server would wait for its next update here.
				<-ctx.Done()
				stopped <- context.Cause(ctx)
				return nil
			}
		})
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		msg, err := c.Read(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(msg.Data))
	}
	c.Close(websocket.StatusGoingAway, "done")

	cause := <-stopped
	fmt.Println("server stopped:", errors.Is(cause, io.EOF), cause)
	// Output:
	// update 1
	// update 2
	// update 3
	// server stopped: true websocket: closed by peer with 1001 (going away): "done"
}

// NetConn runs a byte-stream protocol over a WebSocket, here a line
// protocol read with bufio. The client's Close (1000) reads as io.EOF on
// the server, which ends its Scanner.
func ExampleNetConn() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
			lines := bufio.NewScanner(nc)
			for lines.Scan() {
				if _, err := fmt.Fprintf(nc, "%s!\n", strings.ToUpper(lines.Text())); err != nil {
					return err
				}
			}
			return lines.Err()
		})
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		log.Fatal(err)
	}
	nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))

	replies := bufio.NewReader(nc)
	for _, s := range []string{"hello", "tunnel"} {
		fmt.Fprintln(nc, s)
		line, err := replies.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(line)
	}
	// Output:
	// HELLO!
	// TUNNEL!
}
