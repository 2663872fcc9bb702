package websocket_test

import (
	"context"
	"encoding/json"
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

// The Falcon guide's chat endpoint: every message is JSON {"text": ...},
// answered with {"text": "Echo: ..."}. A normal close by the browser ends
// the loop quietly, and Open closes the connection with the right code.
func ExampleOpen() {
	http.HandleFunc("/chat/connect", func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			for {
				msg, err := c.Read(ctx)
				if err != nil {
					return err
				}
				var in struct{ Text string }
				if err := json.Unmarshal(msg.Data, &in); err != nil {
					return &websocket.CloseError{Code: websocket.StatusUnsupportedData, Reason: "expected JSON"}
				}
				reply, _ := json.Marshal(map[string]string{"text": "Echo: " + in.Text})
				c.SendText(reply)
				if err := c.Flush(); err != nil {
					return err
				}
			}
		})
	})
}

// Accept hands the connection to the caller, who closes it: here a server
// that pushes the time every second until the client leaves.
func ExampleAccept() {
	http.HandleFunc("/clock", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			OriginPatterns: []string{"*.example.com"},
			Options:        websocket.Options{PingInterval: 30 * time.Second},
		})
		if err != nil {
			return // Accept has written the HTTP error
		}
		defer c.CloseNow()
		// A reader must run to answer pings and see the client's close.
		ctx, cancel := context.WithCancel(r.Context())
		go func() {
			defer cancel()
			for {
				if _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if err := c.Write(ctx, websocket.MessageText, []byte(now.Format(time.RFC3339))); err != nil {
					return
				}
			}
		}
	})
}

// Dial connects to a server, sends a message and reads the answer.
func ExampleDial() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websocket.Open(w, r, nil, func(ctx context.Context, c *websocket.Conn) error {
			msg, err := c.Read(ctx)
			if err != nil {
				return err
			}
			return c.Write(ctx, websocket.MessageText, []byte("hello, "+string(msg.Data)))
		})
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
		Header: http.Header{"Authorization": {"Bearer token"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("duplex")); err != nil {
		log.Fatal(err)
	}
	msg, err := c.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(msg.Data))
	_, err = c.Read(ctx) // the server's handler returned: it closed with 1000
	fmt.Println(errors.Is(err, io.EOF))
	// Output:
	// hello, duplex
	// true
}

// A room sends each message to all its members: prepared once, it is framed
// once, and compressed once for the members whose connections keep no
// compression context.
func ExampleNewPreparedMessage() {
	var members []*websocket.Conn // the room's connections, from Accept
	broadcast := func(text []byte) {
		pm := websocket.NewPreparedMessage(websocket.MessageText, text)
		for _, c := range members {
			if err := c.SendPrepared(pm); err != nil {
				c.CloseNow() // a real hub would drop the member
				continue
			}
			c.Flush()
		}
	}
	broadcast([]byte(`{"text":"hello, room"}`))
}

// A relay that copies one connection's messages to another reuses one
// buffer: once it has grown to the largest message, reading allocates nothing.
func ExampleConn_ReadInto() {
	relay := func(ctx context.Context, from, to *websocket.Conn) error {
		var buf []byte
		for {
			msg, err := from.ReadInto(ctx, buf)
			if err != nil {
				return err
			}
			buf = msg.Data
			if err := to.Write(ctx, msg.Type, msg.Data); err != nil {
				return err
			}
		}
	}
	_ = relay
}

// AcceptEvents serves many mostly idle connections without a goroutine
// each (on Linux): here an echo, whose messages arrive in OnMessage.
// msg.Data is OnMessage's only until it returns; SendText copies it.
func ExampleAcceptEvents() {
	srv := &websocket.Server{Options: websocket.AcceptOptions{Options: websocket.Options{PingInterval: 30 * time.Second}}}
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		srv.AcceptEvents(w, r, websocket.Events{ // returns once the handshake is done
			OnMessage: func(c *websocket.Conn, msg websocket.Message) error {
				if msg.Type != websocket.MessageText {
					return &websocket.CloseError{Code: websocket.StatusUnsupportedData, Reason: "text only"}
				}
				c.SendText(msg.Data)
				return c.Flush()
			},
			OnClose: func(c *websocket.Conn, err error) {
				if !errors.Is(err, io.EOF) {
					log.Printf("%v: %v", c.RemoteAddr(), err)
				}
			},
		})
	})
	// srv.Shutdown closes these connections as it closes Open's.
}
