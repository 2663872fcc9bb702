package hub

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// A client that stops reading among fast ones: its queue overflows and it is
// closed with CloseSlowConsumer, while the room and the fast clients go on.
// The fast clients' delivery lag and the server's heap are measured and
// logged, not asserted (timing is not a test assertion here).
func TestSlowConsumerIsClosed(t *testing.T) {
	inEachMode(t, func(t *testing.T, mode serveMode) {
		const (
			fast       = 10
			size       = 1 << 10
			maxTime    = 30 * time.Second
			queueBytes = 256 << 10 // the mechanism of the 1 MiB default, sooner
			sndbuf     = 32 << 10
		)
		perSec := 500
		if raceEnabled {
			perSec = 200 // the race detector slows the fast clients' reading
		}
		// Small server send buffers: see startHubSendBuffer.
		h, url := startHubSendBuffer(t, mode, Options{QueueBytes: queueBytes}, sndbuf)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		// The slow client: a small receive buffer, and no reading until the
		// hub has given up on it.
		slow := dialSmallBuffer(t, ctx, url, 16<<10)
		defer slow.CloseNow()
		slowCall(t, ctx, slow, `{"id":1,"op":"connect"}`)
		slowCall(t, ctx, slow, `{"id":2,"op":"subscribe","room":"s"}`)

		var mu sync.Mutex
		var lags []time.Duration
		var wg sync.WaitGroup
		for i := 0; i < fast; i++ {
			c := dialSmallBuffer(t, ctx, url, 0)
			defer c.CloseNow()
			slowCall(t, ctx, c, `{"id":1,"op":"connect"}`)
			slowCall(t, ctx, c, `{"id":2,"op":"subscribe","room":"s"}`)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []byte
				var mine []time.Duration
				defer func() { mu.Lock(); lags = append(lags, mine...); mu.Unlock() }()
				for {
					msg, err := c.ReadInto(ctx, buf)
					if err != nil {
						return // closed at the end of the test
					}
					buf = msg.Data[:0]
					// Only the send time is needed: no JSON decoding, so that
					// these clients really are fast.
					if i := bytes.Index(msg.Data, []byte(`{"t":`)); i >= 0 {
						rest := msg.Data[i+5:]
						if j := bytes.IndexByte(rest, ','); j > 0 {
							if ns, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
								mine = append(mine, time.Since(time.Unix(0, ns)))
							}
						}
					}
				}
			}()
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		baseHeap := ms.HeapInuse
		var peakHeap uint64
		// Random letters: compression (on by default) must not shrink the
		// flow, or the slow client's socket buffers would swallow it all.
		rnd := make([]byte, size*3/4)
		crand.Read(rnd)
		pad := base64.StdEncoding.EncodeToString(rnd)
		start := time.Now()
		published := 0
		tick := time.NewTicker(time.Second / time.Duration(perSec) * 10)
		defer tick.Stop()
		for h.Stats().SlowConsumers == 0 && time.Since(start) < maxTime {
			<-tick.C
			for range 10 {
				data := fmt.Sprintf(`{"t":%d,"pad":%q}`, time.Now().UnixNano(), pad)
				if _, err := h.Publish(ctx, "s", json.RawMessage(data)); err != nil {
					t.Fatal(err)
				}
				published++
			}
			if published%1000 == 0 {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
			}
		}
		overflowAfter := time.Since(start)
		if n := h.Stats().SlowConsumers; n != 1 {
			t.Fatalf("%d slow consumers closed after %v and %d publications, want exactly the one that does not read", n, overflowAfter, published)
		}
		// The slow client now reads what reached it, then the close, while the
		// room goes on: the fast clients must not notice.
		type slowEnd struct {
			code     websocket.StatusCode
			reason   string
			received int
			err      error
		}
		slowDone := make(chan slowEnd, 1)
		go func() {
			var e slowEnd
			for {
				_, err := slow.Read(ctx)
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					e.code, e.reason = ce.Code, ce.Reason
					break
				}
				if err != nil {
					e.err = err
					break
				}
				e.received++
			}
			slowDone <- e
		}()
		for range perSec {
			data := fmt.Sprintf(`{"t":%d,"pad":%q}`, time.Now().UnixNano(), pad)
			h.Publish(ctx, "s", json.RawMessage(data))
			published++
			time.Sleep(time.Second / time.Duration(perSec))
		}

		se := <-slowDone
		if se.err != nil {
			t.Fatalf("slow client: %v after %d messages", se.err, se.received)
		}
		code, reason, received := se.code, se.reason, se.received
		h.Shutdown(ctx) // ends the fast clients' connections and readers
		wg.Wait()
		if code != CloseSlowConsumer {
			t.Errorf("slow client closed with %d %q, want %d", code, reason, CloseSlowConsumer)
		}
		mu.Lock()
		slices.Sort(lags)
		n := len(lags)
		mu.Unlock()
		if n == 0 {
			t.Fatal("the fast clients received nothing")
		}
		if want := published * fast; n < want*9/10 {
			t.Errorf("fast clients received %d publications, want about %d", n, want)
		}
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
		t.Logf("slow consumer closed with %d %q after %v and %d publications of %d B (it read %d before the close)",
			code, reason, overflowAfter.Round(time.Millisecond), published, size, received)
		t.Logf("fast clients (%d): %d deliveries, lag p50 %v, p99 %v, max %v (2 cores, race detector on: %v)",
			fast, n, lags[n/2].Round(time.Microsecond), lags[n*99/100].Round(time.Microsecond), lags[n-1].Round(time.Microsecond), raceEnabled)
		t.Logf("server heap in use: %d KiB before, peak %d KiB (queue bound %d KiB per connection)",
			baseHeap>>10, peakHeap>>10, queueBytes>>10)
	})
}

// dialSmallBuffer dials with a socket receive buffer of rcvbuf bytes (when
// positive), so that a client that does not read fills up quickly, as a
// stalled phone would.
func dialSmallBuffer(t *testing.T, ctx context.Context, url string, rcvbuf int) *websocket.Conn {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil && rcvbuf > 0 {
			c.(*net.TCPConn).SetReadBuffer(rcvbuf)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func slowCall(t *testing.T, ctx context.Context, c *websocket.Conn, cmd string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	msg, err := c.Read(ctx)
	if err != nil || !strings.Contains(string(msg.Data), `"result"`) {
		t.Fatalf("%s: %s %v", cmd, msg.Data, err)
	}
}
