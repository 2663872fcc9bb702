//go:build linux

package websocket

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// The event loop (AcceptEvents over a plain socket): a few pollers, epoll
// instances made when the first connection comes (GOMAXPROCS of them),
// each watched by a goroutine that runs while it has connections. A
// connection is in one poller, edge-triggered: each arrival of data is
// reported once, and the poller's goroutine hands the connection to a worker
// (eventworkers.go) unless one serves it already, in which case that one
// looks again before it stops (eventsState.busy and again). A worker reads
// until a read comes back short, which means the socket was drained at that
// moment: whatever comes later is a new edge. So a connection costs one
// epoll_ctl in its life, not one per message as EPOLLONESHOT's re-arming
// would (5% of the server's CPU in an echo profile). Go's runtime poller
// keeps the socket too: writes block there, as on any Conn.

// loopEvents is what a connection waits for: data, or the peer's FIN; and,
// for a write waiting on a full socket buffer (eventsocket_linux.go), room.
// Edge-triggered, EPOLLOUT is reported when room comes after a write found
// none, and along with the other events: it costs no wake-up of its own.
const loopEvents = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | syscall.EPOLLET&0xFFFFFFFF // syscall.EPOLLET is negative

// readEvents are the events that make a connection's worker read it.
const readEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR

// loopState is a connection's registration in its poller, set under the
// eventsState's lock.
type loopState struct {
	p  *poller
	id uint64 // the epoll data of the connection: its key in p.conns
}

type poller struct {
	epfd int
	// waitFn waits for the epoll set to have ready connections in Go's own
	// poller (an epoll descriptor is pollable), so that the goroutine
	// waiting holds no thread: blocked in epoll_wait it would hold one and,
	// until the runtime took it back, its P, which with GOMAXPROCS=1 stops
	// everything else (measured: round trips of 1 ms instead of 0.1).
	raw  syscall.RawConn
	wake [2]int // a pipe, in the epoll set with id 0: wakes run so that it can end

	mu      sync.Mutex
	conns   map[uint64]*Conn
	lastID  uint64
	running bool
}

var pollers struct {
	once sync.Once
	list []*poller
	next atomic.Uint32
}

// startLoop puts c in a poller, and has it served once at once: bytes may
// have come with the handshake.
func startLoop(c *Conn) bool {
	p := pickPoller()
	if p == nil {
		return false
	}
	c.readSem.tryLock() // the loop is the connection's only reader for good: nobody else took it
	c.rb.nonblocking = true
	st := c.ev
	st.mu.Lock()
	st.loop.p = p
	st.loop.id = p.add(c)
	st.mu.Unlock()
	// Through the socket's RawConn, which keeps the descriptor from being
	// closed (and its number reused) meanwhile.
	var err error
	cerr := c.rb.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: loopEvents, Fd: int32(uint32(st.loop.id)), Pad: int32(uint32(st.loop.id >> 32))}
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	st.onLoop.Store(true)
	if cerr != nil || err != nil {
		c.CloseNow() // closed already; or the poller refused it, which would leave it unread
	}
	eventWorkers.submit(c) // busy since newEventsState
	return true
}

func pickPoller() *poller {
	pollers.once.Do(func() {
		for range runtime.GOMAXPROCS(0) {
			p, err := newPoller()
			if err != nil {
				return // the connections that find none are served by goroutines
			}
			pollers.list = append(pollers.list, p)
		}
	})
	if len(pollers.list) == 0 {
		return nil
	}
	return pollers.list[int(pollers.next.Add(1))%len(pollers.list)]
}

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &poller{epfd: epfd}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p.wake[0])
		syscall.Close(p.wake[1])
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Nonblocking, so that os.NewFile puts it in Go's poller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		syscall.Close(p.wake[0])
		syscall.Close(p.wake[1])
		return nil, os.NewSyscallError("fcntl", err)
	}
	raw, err := os.NewFile(uintptr(epfd), "epoll").SyscallConn()
	if err != nil {
		return nil, err
	}
	p.raw = raw
	return p, nil
}

// add registers c and returns its id, starting the goroutine if it was
// not running.
func (p *poller) add(c *Conn) uint64 {
	p.mu.Lock()
	p.lastID++
	id := p.lastID
	if p.conns == nil {
		p.conns = make(map[uint64]*Conn)
	}
	p.conns[id] = c
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		go p.run()
	}
	return id
}

// remove forgets a connection that closed; closing the socket took it out
// of the epoll set. With the last one gone, the goroutine is woken to end.
func (l *loopState) remove() {
	if l.p == nil {
		return
	}
	p := l.p
	p.mu.Lock()
	delete(p.conns, l.id)
	wake := len(p.conns) == 0 && p.running
	p.mu.Unlock()
	l.p = nil
	if wake {
		syscall.Write(p.wake[1], []byte{0})
	}
}

// run waits for readable connections and hands them to the workers. It ends
// when the poller has no connection left.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 128)
	var n int
	var err error
	wait := func(fd uintptr) bool {
		for {
			n, err = syscall.EpollWait(int(fd), events, 0)
			if err != syscall.EINTR {
				return n > 0 || err != nil // none ready: park until the set is readable
			}
		}
	}
	for {
		if rerr := p.raw.Read(wait); rerr != nil {
			err = rerr
		}
		if err != nil {
			panic(os.NewSyscallError("epoll_wait", err)) // only a broken epoll descriptor fails
		}
		for _, e := range events[:n] {
			id := uint64(uint32(e.Fd)) | uint64(uint32(e.Pad))<<32
			if id == 0 {
				var buf [64]byte
				syscall.Read(p.wake[0], buf[:])
				p.mu.Lock()
				if len(p.conns) == 0 {
					p.running = false
					p.mu.Unlock()
					return
				}
				p.mu.Unlock()
				continue
			}
			p.mu.Lock()
			c := p.conns[id]
			p.mu.Unlock()
			if c == nil {
				continue
			}
			if s, ok := c.t.(*eventSocket); ok {
				s.ready(e.Events)
			}
			if e.Events&readEvents != 0 {
				c.schedule(e.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0)
			}
		}
	}
}
