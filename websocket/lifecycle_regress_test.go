package websocket_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// A context given to one Write bounds that write and nothing after it. The
// common pattern, a Write under a context that is cancelled once it
// returned, used to leave the context watching the connection: a later,
// unrelated write blocked on a slow peer failed with "write timed out" the
// moment the context was cancelled, and the connection was closed.
func TestWriteContextBoundsOnlyItsWrite(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			proceed := make(chan struct{})
			received := make(chan int64, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				websocket.Open(w, r, &websocket.AcceptOptions{Options: websocket.Options{ReadLimit: -1}}, func(ctx context.Context, c *websocket.Conn) error {
					if _, err := c.Read(ctx); err != nil {
						return err
					}
					<-proceed // a slow peer: reads nothing until told
					var total int64
					for {
						msg, err := c.Read(ctx)
						if err != nil {
							received <- total
							return err
						}
						total += int64(len(msg.Data))
					}
				})
			}))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			defer srv.Close()
			tr := srv.Client().Transport.(*http.Transport)
			tr.ForceAttemptHTTP2 = true
			version := websocket.HTTP1
			if proto == "HTTP/2" {
				version = websocket.HTTP2
			}
			ctx := testCtx(t)
			c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https"), &websocket.DialOptions{
				HTTPClient: srv.Client(), HTTPVersion: version,
				Options: websocket.Options{WriteTimeout: 20 * time.Second},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()

			wctx, cancel := context.WithCancel(ctx)
			if err := c.Write(wctx, websocket.MessageText, []byte("first")); err != nil {
				t.Fatal(err)
			}

			// Unrelated writes that block on the slow peer, bounded only by
			// the 20 s WriteTimeout.
			const msgs, size = 8, 4 << 20
			flushed := make(chan error, 1)
			go func() {
				p := make([]byte, size)
				for range msgs {
					if err := c.SendBinary(p); err != nil {
						flushed <- err
						return
					}
				}
				flushed <- c.Flush()
			}()
			time.Sleep(200 * time.Millisecond) // let the writes block
			cancel()                           // the first Write's context ends
			time.Sleep(200 * time.Millisecond)
			close(proceed)
			if err := <-flushed; err != nil {
				t.Fatalf("a write blocked on a slow peer failed when an earlier Write's context was cancelled: %v", err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			if got := <-received; got != msgs*size {
				t.Fatalf("the server received %d bytes, want %d", got, msgs*size)
			}
		})
	}
}

// A peer that sends its close frame and then resets the HTTP/2 stream (a
// browser tab closed) ends the server's Read with the peer's close code, as
// over HTTP/1.1; it used to end with "context canceled", because the
// handler's context followed the request's, which net/http cancels when the
// stream is reset.
func TestHTTP2PeerCloseThenResetGivesPeerCode(t *testing.T) {
	for range 50 {
		p := startServerPeerH2(t, defaultConfig())
		p.send(p.closeFrame(1001, "tab closed"))
		p.conn.(*h2Stream).abort()
		var err error
		select {
		case err = <-p.our.errc:
		case <-time.After(ioTimeout):
			t.Fatal("the server's Read did not end")
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !ce.Remote {
			t.Fatalf("the server's Read ended with %v, want the peer's 1001", err)
		}
	}
}

// A client that drops its connection over HTTP/2 while a read ahead still waits on the
// stream (left by a Read whose context ended) drains the stream's end in a
// second goroutine. The two used to read the response body at once, and
// net/http wakes only one of them when the stream ends: the other stayed
// until the 2 s grace reset. Reads now take turns, so the drain ends with
// the stream.
func TestHTTP2ClientCloseWithReadAheadLeavesNoReader(t *testing.T) {
	srv := startH2Server(t, echoHandler(nil, nil), true)
	ctx := testCtx(t)
	c, _ := dialH2(t, ctx, srv.wsURL("/"), &websocket.DialOptions{HTTPClient: srv.client(), HTTPVersion: websocket.HTTP2})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := c.Read(short) // leaves a read ahead waiting on the stream
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short read: %v", err)
	}
	// CloseNow: no closing handshake reads the stream first, so the read
	// ahead is still waiting when the drain starts.
	c.CloseNow()
	// The grace reset would end a stuck reader after 2 s: look well before.
	readers := []string{"(*clientStreamEnd).finish.func1", "(*streamTransport).readAhead"}
	start := time.Now()
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		left := ""
		for _, r := range readers {
			if strings.Contains(stacks, r) {
				left = r
			}
		}
		if left == "" {
			t.Logf("the stream's readers ended %v after CloseNow returned", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > time.Second {
			t.Fatalf("%s still runs 1 s after CloseNow (it waits for the 2 s grace reset):\n%s", left, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A peer whose connection ends between frames, without a close frame (a
// TCP FIN, or END_STREAM over HTTP/2), has not ended the conversation
// normally: Read ends with 1006, and errors.Is(err, io.EOF)
// is false, as for every close but the peer's 1000 and 1001. It used to be
// true, because the CloseError unwrapped to the transport's io.EOF, so that
// a read loop (and Open) took a lost connection for a normal end.
func TestLostConnectionIsNotEOF(t *testing.T) {
	for _, tr := range transports {
		for _, s := range bothSides {
			if s == clientSide && tr.suffix != "" {
				continue // the raw HTTP/2 server cannot end its half of the stream before its handler returns
			}
			t.Run(string(s)+tr.suffix, func(t *testing.T) {
				p := tr.start(t, s, defaultConfig())
				p.send(p.text("between messages", true))
				p.expectText("between messages")
				if err := p.conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				p.expectOurCloseErr(websocket.StatusAbnormalClosure, false) // checks errors.Is(err, io.EOF)
				p.expectEOF()
			})
		}
	}
}
