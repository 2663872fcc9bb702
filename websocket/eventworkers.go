package websocket

import (
	"runtime"
	"sync"
)

// eventWorkers runs the event loop's callbacks: the pollers hand it the
// connections that are readable (or have closed) and its goroutines serve
// them. A goroutine is started when a connection waits and every running
// one is busy, up to a bound, and ends when nothing waits: idle, the pool
// has none. The bound keeps a burst of slow callbacks from starting
// goroutines without end; it is large enough that one slow OnMessage does
// not hold up the other connections.
var eventWorkers = &eventWorkerPool{max: max(64, 16*runtime.GOMAXPROCS(0))}

type eventWorkerPool struct {
	max int

	mu      sync.Mutex
	queue   []*Conn
	head    int // queue[head:] waits
	workers int // goroutines running
	busy    int // of which serving a connection
}

// submit queues c, which its eventsState marks busy: no other worker will
// be given it until it is served.
func (p *eventWorkerPool) submit(c *Conn) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	start := p.workers-p.busy < len(p.queue)-p.head && p.workers < p.max
	if start {
		p.workers++
	}
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

func (p *eventWorkerPool) work() {
	p.mu.Lock()
	for p.head < len(p.queue) {
		c := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		}
		p.busy++
		p.mu.Unlock()
		c.serve()
		p.mu.Lock()
		p.busy--
	}
	p.workers--
	p.mu.Unlock()
}
