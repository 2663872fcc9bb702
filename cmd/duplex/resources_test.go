package main

import (
	"fmt"
	"os"
	"runtime"
	runtimemetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// usage is what the process holds at one moment: the server under test
// runs in it (startRun), so that its goroutines and heap are read exactly.
type usage struct {
	goroutines int
	heapLive   uint64 // bytes of heap live after a GC (runtime/metrics)
	rss        uint64 // bytes resident (/proc/self/status VmRSS), for the log only: the runtime returns memory to the OS lazily
}

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, heap %.1f MiB, RSS %.1f MiB", u.goroutines, mib(u.heapLive), mib(u.rss))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// measureUsage collects garbage and reads the usage. Twice: what sync.Pools
// hold survives one collection (net/http pools a connection's buffers).
func measureUsage() usage {
	runtime.GC()
	runtime.GC()
	s := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(s)
	return usage{goroutines: runtime.NumGoroutine(), heapLive: s[0].Value.Uint64(), rss: vmRSS()}
}

func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Tolerances of a return to the baseline: a few goroutines come and go on
// their own (the GC's workers, timers, the HTTP client's idle connections),
// and the heap keeps pools and caches warmed by the load. The runtime also
// keeps the descriptor of every goroutine that ever ran at once, for reuse
// (runtime.malg; about 0.9 KiB each, as a heap profile shows): so the heap
// may stay higher by that much per goroutine of the peak. A connection
// left behind costs some 10 KiB (net/http's buffers alone are 8 KiB).
const (
	goroutineSlack   = 15
	heapSlack        = 4 << 20
	heapPerGoroutine = 1 << 10
)

// awaitBaseline waits until the process is back near base after peak, and
// fails t with both measures when it does not come back within
// testTimeout.
func awaitBaseline(t *testing.T, base, peak usage) usage {
	t.Helper()
	heapMax := base.heapLive + heapSlack + uint64(max(0, peak.goroutines-base.goroutines))*heapPerGoroutine
	deadline := time.Now().Add(testTimeout)
	for {
		u := measureUsage()
		if u.goroutines <= base.goroutines+goroutineSlack && u.heapLive <= heapMax {
			return u
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("not back to the baseline after %v: %v, baseline %v (tolerance %d goroutines, heap up to %.1f MiB)\n%s",
				testTimeout, u, base, goroutineSlack, mib(heapMax), firstLines(string(buf), 80))
			return u
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// latencies collects durations from many goroutines and summarizes them
// for the log (never for an assertion: timing on a shared machine says
// little).
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) String() string {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(d), at(0.5).Round(10*time.Microsecond),
		at(0.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
}
