//go:build linux

package hub

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestEventLoopIdleSubscribersHoldNoGoroutine: with Options.EventLoop, n
// subscribers that connected, subscribed and were sent a publication, and
// now wait, hold no goroutine of the server's: the process has the event
// loop's pollers (GOMAXPROCS) and a few more than before, whatever n. The
// goroutine mode is measured alike and must show its goroutine per
// subscriber, so that the measure is seen to count them. The clients read
// synchronously, holding no goroutine themselves. Both modes' live heap and
// stacks per subscriber (server and client sides) are logged; DUPLEX_LONG=1 measures
// 1000 subscribers instead of 200.
func TestEventLoopIdleSubscribersHoldNoGoroutine(t *testing.T) {
	n := 200
	if os.Getenv("DUPLEX_LONG") != "" {
		n = 1000
	}
	inEachMode(t, func(t *testing.T, mode serveMode) {
		goroutines, heap := measureIdleSubscribers(t, mode, n)
		allowance := idleAllowance()
		t.Logf("%s: %d idle subscribers: %+d goroutines (%.2f each), %+.0f B live heap and stacks each (server and client)",
			mode.name, n, goroutines, float64(goroutines)/float64(n), float64(heap)/float64(n))
		switch {
		case mode.eventLoop && goroutines > allowance:
			t.Errorf("%d idle subscribers hold %d goroutines in the event-loop mode; want at most %d, whatever their number",
				n, goroutines, allowance)
		case !mode.eventLoop && goroutines < n-allowance: // less what other tests left behind and ended meanwhile
			t.Errorf("%d idle subscribers hold %d goroutines in the goroutine mode; want one each: the measure is off", n, goroutines)
		}
	})
}

// measureIdleSubscribers returns the goroutines and live heap bytes that n
// idle subscribers add to the process.
func measureIdleSubscribers(t *testing.T, mode serveMode, n int) (goroutines int, heap int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, url := startHub(t, mode, Options{})
	goroutinesBefore, heapBefore := runtime.NumGoroutine(), liveHeap()
	clients := make([]*websocket.Conn, n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	for i := range clients {
		clients[i] = subscribeSync(t, ctx, url, "idle")
	}
	if _, err := h.Publish(ctx, "idle", json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if _, err := c.Read(ctx); err != nil {
			t.Fatalf("the publication: %v", err)
		}
	}
	// What is left of the handshakes', the writers' and the workers'
	// goroutines ends soon.
	settled := idleAllowance()
	if !mode.eventLoop {
		settled += n
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if goroutines = runtime.NumGoroutine() - goroutinesBefore; goroutines <= settled {
			break
		}
	}
	heap = liveHeap() - heapBefore
	if got := h.Stats().Connections; got != n {
		t.Fatalf("Stats().Connections = %d; want %d", got, n)
	}
	return goroutines, heap
}

// idleAllowance is how many goroutines the process may gain in the
// event-loop mode, whatever the number of subscribers: the loop's pollers
// (GOMAXPROCS of them) and a few of the runtime's and net/http's.
func idleAllowance() int { return runtime.GOMAXPROCS(0) + 4 }

// liveHeap is the memory in use after two collections (the second frees
// what sync.Pools kept through the first): the live heap and the
// goroutines' stacks.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}
