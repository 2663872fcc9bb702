package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fanOutPeers starts a server that hands every accepted connection to the
// test, and dials it once per client option set. It returns the server's
// connections in the order of opts, and the clients.
func fanOutPeers(t *testing.T, server *AcceptOptions, opts []*DialOptions) (servers, clients []*Conn) {
	t.Helper()
	accepted := make(chan *Conn)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, server)
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- c
	}))
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	for _, o := range opts {
		clients = append(clients, dial(t, url, o))
		s := <-accepted
		t.Cleanup(func() { s.CloseNow() })
		servers = append(servers, s)
	}
	return servers, clients
}

func compressionClient(co *CompressionOptions) *DialOptions {
	return &DialOptions{Options: Options{Compression: co}}
}

// peerKinds are the receivers of a fan-out, with what the server's side of
// each connection negotiates.
var peerKinds = []struct {
	name string
	opts *DialOptions
}{
	{"no compression", compressionClient(&CompressionOptions{Disabled: true})},
	{"takeover, 13 bits", compressionClient(nil)},
	{"takeover, 15 bits", compressionClient(&CompressionOptions{MaxWindowBits: 15})},
	{"no takeover, 13 bits", compressionClient(&CompressionOptions{NoContextTakeover: true})},
	{"no takeover, 13 bits, again", compressionClient(&CompressionOptions{NoContextTakeover: true})},
	{"no takeover, 15 bits", compressionClient(&CompressionOptions{NoContextTakeover: true, MaxWindowBits: 15})},
	{"no takeover, 9 bits", compressionClient(&CompressionOptions{NoContextTakeover: true, MaxWindowBits: 9})},
}

// TestPreparedMessageFanOut writes prepared messages (compressible and
// not, below the threshold, binary, larger than the windows) to server
// connections of every kind and checks what each client reads, whether it
// came compressed, and that compression happened once per parameter set.
func TestPreparedMessageFanOut(t *testing.T) {
	var opts []*DialOptions
	for _, k := range peerKinds {
		opts = append(opts, k.opts)
	}
	servers, clients := fanOutPeers(t, nil, opts)
	for i, k := range peerKinds {
		if d := servers[i].deflate; d != nil {
			t.Logf("%s: server sends with %+v", k.name, d.params)
		}
	}
	rng := newTestRand()
	type key struct{ level, bits int }
	cases := []struct {
		name     string
		typ      MessageType
		data     []byte
		compress bool  // by the server's default options
		cached   []key // the compressed frames the no-takeover peers share
	}{
		{"text 2 KiB", MessageText, chatLike(rng, 2<<10), true, []key{{1, 15}, {1, 9}}},
		{"text 20 B", MessageText, []byte("below the threshold"), false, nil},
		{"binary 2 KiB", MessageBinary, bytes.Repeat([]byte("binary "), 300), false, nil},
		{"text 20 KiB", MessageText, chatLike(rng, 20<<10), true, []key{{1, 13}, {1, 15}, {1, 9}}},
		{"empty", MessageBinary, nil, false, nil},
	}
	ctx := testCtx(t)
	for _, tc := range cases {
		pm := NewPreparedMessage(tc.typ, tc.data)
		orig := slices.Clone(tc.data)
		for i, s := range servers {
			// Half the connections queue it and flush, half write it.
			var err error
			if i%2 == 0 {
				if err = s.SendPrepared(pm); err == nil {
					err = s.Flush()
				}
			} else {
				err = s.WritePrepared(ctx, pm)
			}
			if err != nil {
				t.Fatalf("%s to %s: %v", tc.name, peerKinds[i].name, err)
			}
		}
		for i, c := range clients {
			msg, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("%s to %s: %v", tc.name, peerKinds[i].name, err)
			}
			if msg.Type != tc.typ || !bytes.Equal(msg.Data, tc.data) {
				t.Fatalf("%s to %s: arrived as %v, %d bytes", tc.name, peerKinds[i].name, msg.Type, len(msg.Data))
			}
			if want := tc.compress && c.deflate != nil; c.rs.compressed != want {
				t.Errorf("%s to %s: compressed %v, want %v", tc.name, peerKinds[i].name, c.rs.compressed, want)
			}
		}
		var got []key
		if list := pm.compressed.Load(); list != nil {
			for _, f := range *list {
				got = append(got, key{f.level, f.bits})
			}
		}
		if !slices.Equal(got, tc.cached) {
			t.Errorf("%s: compressed frames cached for %v, want %v", tc.name, got, tc.cached)
		}
		if !bytes.Equal(pm.data(), orig) {
			t.Fatalf("%s: the prepared message changed", tc.name)
		}
	}
}

// TestPreparedMessageSharedFrame checks that connections without context
// takeover and with the same parameters are given the very same frame, and
// that it holds what SendText would have sent.
func TestPreparedMessageSharedFrame(t *testing.T) {
	data := chatLike(newTestRand(), 3000)
	pm := NewPreparedMessage(MessageText, data)
	a, b := pm.compressedFor(9, 13), pm.compressedFor(9, 15) // 3000 bytes fit both windows
	if a != b || &a.frame[0] != &b.frame[0] {
		t.Fatal("two windows the message fits in got different frames")
	}
	if c := pm.compressedFor(9, 11); c == a {
		t.Fatal("a window smaller than the message shares the standard encoder's frame")
	}
	if n := len(*pm.compressed.Load()); n != 2 {
		t.Fatalf("%d frames cached, want 2", n)
	}

	d := newDeflater(deflateParams{sendNoTakeover: true, sendWindowBits: 13}, &CompressionOptions{Level: 9})
	want := d.compress(data)
	h, hlen, err := parseFrameHeader(a.frame)
	if err != nil || hlen != a.hlen || h.rsv != bitRSV1 || h.opcode != opText || !h.fin || h.masked || h.length != int64(len(want)) {
		t.Fatalf("header %+v (%d bytes, %v), want a final unmasked compressed text frame of %d bytes", h, hlen, err, len(want))
	}
	if !bytes.Equal(a.frame[hlen:], want) {
		t.Fatal("the prepared compressed payload differs from what SendText sends")
	}
	d.releaseOut()
}

// TestPreparedMessageConcurrent sends fresh prepared messages from many
// goroutines at once, several per connection, to peers with and without
// context takeover, so that the lazy compression races with itself (run
// with -race). Each client checks every message it reads.
func TestPreparedMessageConcurrent(t *testing.T) {
	opts := []*DialOptions{
		compressionClient(&CompressionOptions{NoContextTakeover: true}),
		compressionClient(&CompressionOptions{NoContextTakeover: true}),
		compressionClient(&CompressionOptions{NoContextTakeover: true, MaxWindowBits: 15}),
		compressionClient(nil),
		compressionClient(&CompressionOptions{Disabled: true}),
	}
	servers, clients := fanOutPeers(t, nil, opts)
	const rounds, senders = 20, 4
	rng := newTestRand()
	msgs := make([][]byte, rounds)
	for i := range msgs {
		msgs[i] = chatLike(rng, 100+i*700) // 100 B to 13 KiB
	}
	ctx := testCtx(t)

	var readers sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for range rounds * senders {
				msg, err := c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				// Messages of one round may arrive in any order; each is
				// the round's text, identified by its length.
				i := (len(msg.Data) - 100) / 700
				if i < 0 || i >= rounds || !bytes.Equal(msg.Data, msgs[i]) {
					errs <- fmt.Errorf("a message of %d bytes arrived corrupted", len(msg.Data))
					return
				}
			}
		}()
	}
	for _, data := range msgs {
		pm := NewPreparedMessage(MessageText, data)
		var wg sync.WaitGroup
		for _, s := range servers {
			for j := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					if j%2 == 0 {
						err = s.WritePrepared(ctx, pm)
					} else if err = s.SendPrepared(pm); err == nil {
						err = s.Flush()
					}
					if err != nil {
						t.Error(err)
					}
				}()
			}
		}
		wg.Wait()
	}
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestPreparedMessageFromClient checks that a client masks a prepared
// message like any other write: the server would fail the connection over
// an unmasked frame.
func TestPreparedMessageFromClient(t *testing.T) {
	for _, k := range peerKinds {
		t.Run(k.name, func(t *testing.T) {
			got := make(chan Message, 4)
			url, _ := serve(t, nil, func(ctx context.Context, c *Conn) error {
				for {
					msg, err := c.Read(ctx)
					if err != nil {
						return err
					}
					got <- msg
				}
			})
			c := dial(t, url, k.opts)
			ctx := testCtx(t)
			data := chatLike(newTestRand(), 5000)
			pm := NewPreparedMessage(MessageText, data)
			for range 2 {
				if err := c.WritePrepared(ctx, pm); err != nil {
					t.Fatal(err)
				}
				if msg := <-got; msg.Type != MessageText || !bytes.Equal(msg.Data, data) {
					t.Fatalf("the server read %d bytes of %v", len(msg.Data), msg.Type)
				}
			}
			if !bytes.Equal(pm.data(), data) {
				t.Fatal("masking changed the prepared message")
			}
		})
	}
}

func TestPreparedMessageErrors(t *testing.T) {
	servers, _ := fanOutPeers(t, nil, []*DialOptions{nil})
	s := servers[0]
	if err := s.SendPrepared(NewPreparedMessage(MessageType(9), []byte("x"))); err == nil {
		t.Fatal("a prepared message of type 9 was sent")
	}
	s.CloseNow()
	if err := s.WritePrepared(testCtx(t), NewPreparedMessage(MessageText, []byte("late"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("after CloseNow: %v, want ErrClosed", err)
	}
}
