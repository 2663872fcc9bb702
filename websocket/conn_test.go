package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve starts a server whose handler runs inside Open and returns the
// ws:// URL and a channel that receives Open's result.
func serve(t *testing.T, opts *AcceptOptions, handler func(ctx context.Context, c *Conn) error) (string, <-chan error) {
	t.Helper()
	result := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		result <- Open(w, r, opts, handler)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), result
}

func dial(t *testing.T, url string, opts *DialOptions) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expectClose reads until the connection ends and checks the close error.
func expectClose(t *testing.T, c *Conn, code StatusCode, remote bool) *CloseError {
	t.Helper()
	ctx := testCtx(t)
	for {
		_, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != code || ce.Remote != remote {
			t.Fatalf("read error %v, want close %d (remote %v)", err, code, remote)
		}
		return ce
	}
}

func TestOpenClosesWithHandlerOutcome(t *testing.T) {
	cases := []struct {
		name   string
		ret    error
		code   StatusCode
		reason string
	}{
		{"nil", nil, StatusNormalClosure, ""},
		{"error", errors.New("database down"), StatusInternalError, "internal error"},
		{"close error", &CloseError{Code: 4001, Reason: "kicked"}, 4001, "kicked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, result := serve(t, nil, func(ctx context.Context, c *Conn) error {
				if _, err := c.Read(ctx); err != nil {
					return err
				}
				return tc.ret
			})
			c := dial(t, url, nil)
			c.Write(testCtx(t), MessageText, []byte("go"))
			ce := expectClose(t, c, tc.code, true)
			if ce.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", ce.Reason, tc.reason)
			}
			if err := <-result; err != tc.ret {
				t.Fatalf("Open returned %v, want %v", err, tc.ret)
			}
		})
	}
}

func TestOpenEndsQuietlyWhenPeerCloses(t *testing.T) {
	for _, code := range []StatusCode{StatusNormalClosure, StatusGoingAway, 4000} {
		url, result := serve(t, nil, func(ctx context.Context, c *Conn) error {
			for {
				if _, err := c.Read(ctx); err != nil {
					return err
				}
			}
		})
		c := dial(t, url, nil)
		if err := c.Close(code, "bye"); err != nil {
			t.Fatalf("close %d: %v", code, err)
		}
		err := <-result
		var ce *CloseError
		switch {
		case code == 4000 && (!errors.As(err, &ce) || ce.Code != 4000 || !ce.Remote || ce.Reason != "bye"):
			t.Fatalf("Open after peer close 4000 returned %v", err)
		case code != 4000 && err != nil:
			t.Fatalf("Open after peer close %d returned %v, want nil", code, err)
		}
	}
}

func TestReadLimit(t *testing.T) {
	url, result := serve(t, &AcceptOptions{Options: Options{ReadLimit: 1000}}, func(ctx context.Context, c *Conn) error {
		for {
			if _, err := c.Read(ctx); err != nil {
				return err
			}
		}
	})
	c := dial(t, url, nil)
	ctx := testCtx(t)
	if err := c.Write(ctx, MessageBinary, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	// Over the limit in fragments: the sum counts.
	w, _ := c.Writer(ctx, MessageBinary)
	w.Write(make([]byte, 600))
	w.Write(make([]byte, 600))
	w.Close()
	expectClose(t, c, StatusMessageTooBig, true)
	var ce *CloseError
	if err := <-result; !errors.As(err, &ce) || ce.Code != StatusMessageTooBig || ce.Remote {
		t.Fatalf("server's Read returned %v, want a local 1009", err)
	}
}

func TestReadContextBetweenMessagesKeepsConnection(t *testing.T) {
	url, _ := serve(t, nil, func(ctx context.Context, c *Conn) error {
		time.Sleep(100 * time.Millisecond)
		return c.Write(ctx, MessageText, []byte("late"))
	})
	c := dial(t, url, nil)
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Read(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with an expiring context: %v", err)
	}
	msg, err := c.Read(testCtx(t))
	if err != nil || string(msg.Data) != "late" {
		t.Fatalf("Read after a cancelled one: %q %v", msg.Data, err)
	}
}

func TestConcurrentWritersNeverInterleave(t *testing.T) {
	const writers, each = 8, 200
	url := echoServer(t, nil)
	c := dial(t, url, nil)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := []byte(strings.Repeat(fmt.Sprintf("%d-%d;", w, i), 1+i%300))
				var err error
				switch i % 3 {
				case 0:
					err = c.Write(ctx, MessageText, p)
				case 1:
					if err = c.SendText(p); err == nil {
						err = c.Flush()
					}
				case 2:
					var mw io.WriteCloser
					if mw, err = c.Writer(ctx, MessageText); err == nil {
						mw.Write(p[:len(p)/2])
						mw.Write(p[len(p)/2:])
						err = mw.Close()
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[string]int{}
	for range writers * each {
		msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(msg.Data[:bytes.IndexByte(msg.Data, ';')+1])
		if strings.Repeat(unit, len(msg.Data)/len(unit)) != string(msg.Data) {
			t.Fatalf("message mixes writers: %.80q", msg.Data)
		}
		seen[unit]++
	}
	wg.Wait()
	if len(seen) != writers*each {
		t.Fatalf("%d distinct messages, want %d", len(seen), writers*each)
	}
}

func TestCloseWhileReading(t *testing.T) {
	url := echoServer(t, nil)
	c := dial(t, url, nil)
	readErr := make(chan error, 1)
	go func() { _, err := c.Read(context.Background()); readErr <- err }()
	time.Sleep(10 * time.Millisecond)
	if err := c.Close(StatusGoingAway, "leaving"); err != nil {
		t.Fatal(err)
	}
	err := <-readErr
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusGoingAway || !ce.Remote {
		t.Fatalf("Read during Close returned %v, want the echoed 1001", err)
	}
	if err := c.Write(context.Background(), MessageText, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Read(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v, want ErrClosed", err)
	}
}

func TestCloseWithoutReaderWaitsForPeer(t *testing.T) {
	url := echoServer(t, nil)
	c := dial(t, url, &DialOptions{Options: Options{CloseTimeout: 5 * time.Second}})
	c.SendText([]byte("queued before close"))
	if err := c.Close(StatusNormalClosure, ""); err != nil {
		t.Fatalf("Close with nobody reading: %v", err)
	}
}

func TestKeepaliveClosesSilentPeer(t *testing.T) {
	url, result := serve(t, &AcceptOptions{Options: Options{PingInterval: 20 * time.Millisecond, PongTimeout: 50 * time.Millisecond}},
		func(ctx context.Context, c *Conn) error {
			_, err := c.Read(ctx)
			return err
		})
	// A client that completes the handshake, then never reads again.
	u := strings.TrimPrefix(url, "ws://")
	conn, err := net.Dial("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", u)
	select {
	case err := <-result:
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != StatusAbnormalClosure {
			t.Fatalf("handler ended with %v, want an abnormal close", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("keepalive did not close a silent peer")
	}
}

func TestIdleConnectionHoldsNoBuffers(t *testing.T) {
	conns := make(chan *Conn, 1)
	url, _ := serve(t, nil, func(ctx context.Context, c *Conn) error {
		conns <- c
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
	c := dial(t, url, nil)
	srv := <-conns
	ctx := testCtx(t)
	for _, n := range []int{10, 100 << 10} {
		for _, typ := range []MessageType{MessageBinary, MessageText} { // text is compressed
			c.Write(ctx, typ, bytes.Repeat([]byte("a"), n))
			if _, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if srv.deflate == nil || !srv.rs.compressed {
		t.Fatal("compression was not used")
	}
	time.Sleep(20 * time.Millisecond) // let the server's Read block again
	srv.wmu.Lock()
	wbuf := srv.wbuf
	srv.wmu.Unlock()
	if wbuf != nil {
		t.Error("server holds a write buffer while idle")
	}
	if c.wbuf != nil || c.rb.big != nil {
		t.Error("client holds a buffer while idle")
	}
	for _, conn := range []*Conn{c, srv} {
		if d := conn.deflate; d.outBuf != nil || d.out.b != nil || d.fr != nil {
			t.Error("a connection holds a compression buffer or decompressor while idle")
		}
	}
}

func TestWriteErrorIsSticky(t *testing.T) {
	url, _ := serve(t, nil, func(ctx context.Context, c *Conn) error {
		return c.CloseNow()
	})
	c := dial(t, url, &DialOptions{Options: Options{WriteTimeout: time.Second}})
	ctx := testCtx(t)
	var first error
	for i := 0; i < 1000 && first == nil; i++ {
		first = c.Write(ctx, MessageBinary, make([]byte, 64<<10))
	}
	if first == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
	if err := c.Write(ctx, MessageBinary, []byte("x")); err == nil {
		t.Fatal("write after a failed write succeeded")
	}
}

// TestSignal checks the close signals' channel made on demand: every
// channel handed out before or after the signal fires is closed once it has,
// whichever order waiters and fire come in, and fire reports only the first.
func TestSignal(t *testing.T) {
	isClosed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for round := range 200 {
		var s signal
		chans := make(chan (<-chan struct{}), 64)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 8 {
					chans <- s.done()
				}
			}()
		}
		if round%2 == 0 {
			wg.Wait() // all waiters first, then fire
		}
		firsts := 0
		for range 2 {
			if s.fire() {
				firsts++
			}
		}
		wg.Wait()
		close(chans)
		if firsts != 1 {
			t.Fatalf("fire reported first %d times, want once", firsts)
		}
		if !s.fired() {
			t.Fatal("the signal does not say it fired")
		}
		for ch := range chans {
			if !isClosed(ch) {
				t.Fatal("a channel handed out before the signal fired is still open after")
			}
		}
		if !isClosed(s.done()) {
			t.Fatal("a channel handed out after the signal fired is open")
		}
	}
}
