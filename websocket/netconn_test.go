package websocket_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// oneConnListener hands out one connection, then blocks until closed: it
// lets an http.Server serve a single net.Conn.
type oneConnListener struct {
	conn      net.Conn
	taken     atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c, done: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.taken.Swap(true) {
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// HTTP/1.1 runs over NetConn on both ends: several keep-alive requests on
// one tunnelled connection, with bodies spanning many messages. net/http's
// server also exercises the read deadline: it interrupts its background
// read with a deadline in the past between requests, which must leave the
// connection usable.
func TestNetConnCarriesHTTP(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
		if _, ok := nc.RemoteAddr().(*net.TCPAddr); !ok {
			t.Errorf("server RemoteAddr %T %v, want the TCP address", nc.RemoteAddr(), nc.RemoteAddr())
		}
		ln := newOneConnListener(nc)
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// HTTP/1.1 handlers read the body before answering.
				body, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				w.Header().Set("X-Path", r.URL.Path)
				w.Write(body)
			}),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       10 * time.Second,
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateClosed {
					ln.Close()
				}
			},
		}
		if err := srv.Serve(ln); !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})

	c := wsDial(t, url, nil)
	nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			return nil, errors.New("the tunnel was dialled twice: keep-alive failed")
		}
		return nc, nil
	}}
	client := &http.Client{Transport: tr}
	for i, size := range []int{0, 10, 100 << 10, 1 << 20} {
		body := make([]byte, size)
		rand.Read(body)
		path := fmt.Sprintf("/echo/%d", i)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://tunnel"+path, bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) || resp.Header.Get("X-Path") != path {
			t.Fatalf("request %d: %d bytes back (want %d), path %q, err %v", i, len(got), size, resp.Header.Get("X-Path"), err)
		}
	}
	tr.CloseIdleConnections() // closes nc with 1000
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("server: %v", err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
}

// net/textproto over text messages, and an io.Copy echo over binary ones,
// with writes and reads that do not line up with messages.
func TestNetConnTextprotoAndEcho(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		tp := textproto.NewConn(websocket.NetConn(ctx, c, websocket.MessageText))
		defer tp.Close()
		for {
			line, err := tp.ReadLine()
			if err == io.EOF {
				return nil // the client closed with 1000
			}
			if err != nil {
				return err
			}
			if line == "QUIT" {
				return tp.PrintfLine("221 bye")
			}
			if err := tp.PrintfLine("250 %s", line); err != nil {
				return err
			}
		}
	})
	c := wsDial(t, url, nil)
	tp := textproto.NewConn(websocket.NetConn(ctx, c, websocket.MessageText))
	for _, w := range []string{"HELO duplex", "NOOP", "a longer line, still one message"} {
		id, err := tp.Cmd("%s", w)
		if err != nil {
			t.Fatal(err)
		}
		tp.StartResponse(id)
		_, msg, err := tp.ReadCodeLine(250)
		tp.EndResponse(id)
		if err != nil || msg != w {
			t.Fatalf("reply to %q: %q, %v", w, msg, err)
		}
	}
	if _, err := tp.Cmd("QUIT"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tp.ReadCodeLine(221); err != nil {
		t.Fatal(err)
	}
	// Open closed with 1000 when the handler returned: the stream ends.
	if _, err := tp.ReadLine(); err != io.EOF {
		t.Fatalf("after QUIT: %v, want io.EOF", err)
	}
	tp.Close()
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("server: %v", err)
	}

	url, result = wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
		_, err := io.Copy(nc, nc) // ends with io.EOF as nil: the client's 1000
		return err
	})
	c = wsDial(t, url, nil)
	nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
	data := make([]byte, 3<<20)
	rand.Read(data)
	go func() {
		// Writes of uneven sizes, each one message.
		for p, i := data, 0; len(p) > 0; i++ {
			k := min(len(p), 1+i*7919%(200<<10))
			if _, err := nc.Write(p[:k]); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			p = p[k:]
		}
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(bufio.NewReaderSize(nc, 999), got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed stream differs")
	}
	if err := nc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := nc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("server: %v", err)
	}
}

// A close code other than 1000 and 1001 is an error, not the end of the
// stream; a message of the wrong type fails the connection with 1003.
func TestNetConnCloseCodesAndTypes(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		c.Write(ctx, websocket.MessageBinary, []byte("data"))
		return &websocket.CloseError{Code: 4000, Reason: "done"}
	})
	nc := websocket.NetConn(ctx, wsDial(t, url, nil), websocket.MessageBinary)
	buf, err := io.ReadAll(nc)
	var ce *websocket.CloseError
	if string(buf) != "data" || !errors.As(err, &ce) || ce.Code != 4000 || !ce.Remote {
		t.Fatalf("read %q, %v; want data then the server's 4000", buf, err)
	}

	url, _ = wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		c.Write(ctx, websocket.MessageText, []byte("text"))
		_, err := c.Read(ctx)
		return err
	})
	c := wsDial(t, url, nil)
	nc = websocket.NetConn(ctx, c, websocket.MessageBinary)
	_, err = nc.Read(make([]byte, 10))
	if !errors.As(err, &ce) || ce.Code != websocket.StatusUnsupportedData {
		t.Fatalf("read of a text message: %v, want 1003", err)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

// A read deadline interrupts a Read waiting for a message and leaves the
// connection usable; one that passed before the Read fails it at once, and
// moving it lets reads go on.
func TestNetConnReadDeadlineBetweenMessages(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	send := make(chan string)
	url, result := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		for s := range send {
			if err := c.Write(ctx, websocket.MessageBinary, []byte(s)); err != nil {
				return err
			}
		}
		_, err := c.Read(ctx)
		return err
	})
	nc := websocket.NetConn(ctx, wsDial(t, url, nil), websocket.MessageBinary)
	buf := make([]byte, 64)

	nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := nc.Read(buf); !isTimeoutErr(err) {
		t.Fatalf("blocked read: %v, want a timeout", err)
	}
	if _, err := nc.Read(buf); !isTimeoutErr(err) {
		t.Fatalf("read after the deadline passed: %v, want a timeout", err)
	}
	nc.SetReadDeadline(time.Time{})
	send <- "still here"
	if n, err := nc.Read(buf); err != nil || string(buf[:n]) != "still here" {
		t.Fatalf("read after clearing the deadline: %q, %v", buf[:n], err)
	}

	// A deadline set while a Read is blocked applies to it.
	readErr := make(chan error)
	go func() {
		_, err := nc.Read(buf)
		readErr <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the Read block; the outcome does not depend on it
	nc.SetDeadline(time.Now())
	if err := recv(t, ctx, readErr); !isTimeoutErr(err) {
		t.Fatalf("read interrupted by SetDeadline: %v, want a timeout", err)
	}
	nc.SetDeadline(time.Time{})
	send <- "and again"
	if n, err := nc.Read(buf); err != nil || string(buf[:n]) != "and again" {
		t.Fatalf("read: %q, %v", buf[:n], err)
	}
	close(send)
	if err := nc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := recv(t, ctx, result); err != nil {
		t.Fatalf("server: %v", err)
	}
}

// A deadline that interrupts a Read inside a message closes the
// connection: the rest of the message could not be told from the next.
func TestNetConnReadDeadlineInsideMessage(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		w, err := c.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			return err
		}
		w.Write(make([]byte, 40<<10)) // one frame, not the last
		_, err = c.Read(ctx)          // until the client goes
		return err
	})
	nc := websocket.NetConn(ctx, wsDial(t, url, nil), websocket.MessageBinary)
	// Read the whole frame: the message goes on, so the next Read waits
	// inside it for the next frame's header.
	if _, err := io.ReadFull(nc, make([]byte, 40<<10)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := nc.Read(make([]byte, 10)); !isTimeoutErr(err) {
		t.Fatalf("read inside a message: %v, want a timeout", err)
	}
	nc.SetReadDeadline(time.Time{})
	_, err := nc.Read(make([]byte, 10))
	if err == nil || isTimeoutErr(err) || !errors.Is(err, websocket.ErrClosed) {
		t.Fatalf("read after the interrupted message: %v, want the connection closed", err)
	}
}

// A write deadline interrupts a Write blocked on a peer that does not
// read, which closes the connection; one that passed while no Write ran
// fails the next Write at once and closes nothing.
func TestNetConnWriteDeadline(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	release := make(chan struct{})
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		msg, err := c.Read(ctx)
		if err != nil || string(msg.Data) != "hello" {
			return fmt.Errorf("first message %q, %v", msg.Data, err)
		}
		<-release // stop reading until the client's write was interrupted
		for {
			if _, err := c.Read(ctx); err != nil {
				return err
			}
		}
	})
	nc := websocket.NetConn(ctx, wsDial(t, url, nil), websocket.MessageBinary)
	defer close(release)

	nc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := nc.Write([]byte("hello")); !isTimeoutErr(err) {
		t.Fatalf("write after the deadline: %v, want a timeout", err)
	}
	nc.SetWriteDeadline(time.Time{})
	if n, err := nc.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("write after clearing the deadline: %d, %v", n, err)
	}

	// The server no longer reads: the socket buffers fill and a Write
	// blocks. Each Write gets its own deadline, so that none passes
	// between two Writes.
	chunk := make([]byte, 1<<20)
	var err error
	for i := 0; err == nil; i++ {
		if i == 1000 {
			t.Fatal("1000 MiB written to a peer that does not read")
		}
		nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, err = nc.Write(chunk)
	}
	if !isTimeoutErr(err) {
		t.Fatalf("blocked write: %v, want a timeout", err)
	}
	nc.SetWriteDeadline(time.Time{})
	if _, err := nc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after the interrupted one: %v, want net.ErrClosed", err)
	}
}

// roundTripperFunc hides the *http.Transport from Dial, which then cannot
// capture the network connection, and so knows no addresses.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNetConnAddrPlaceholder(t *testing.T) {
	checkNoLeaks(t)
	ctx := wsTestCtx(t)
	url, _ := wsServer(t, nil, func(ctx context.Context, c *websocket.Conn) error {
		return c.Write(ctx, websocket.MessageBinary, []byte("hi"))
	})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := wsDial(t, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: roundTripperFunc(tr.RoundTrip)}})
	if c.RemoteAddr() != nil {
		t.Skip("Dial found the address through a wrapped transport; nothing to test")
	}
	nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
	for _, a := range []net.Addr{nc.LocalAddr(), nc.RemoteAddr()} {
		if a == nil || a.Network() != "websocket" || a.String() != "websocket" {
			t.Fatalf("address %v, want the placeholder", a)
		}
	}
	if b, err := io.ReadAll(nc); string(b) != "hi" || err != nil {
		t.Fatalf("read %q, %v", b, err)
	}
}
