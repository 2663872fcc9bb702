//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// TestSlowloris: 5000 connections trickle a WebSocket handshake's header one
// byte per second (the whole header would take some 150 s). The server,
// with duplex's own HTTP configuration and -handshake-timeout 3s (10 s with
// DUPLEX_LONG=1), must cut each one itself about that long after it came,
// while 100 honest clients connect and echo beside them; afterwards the
// goroutines and the heap come back to where they were.
//
// The slow side is one goroutine driving raw non-blocking sockets through
// epoll, so that the goroutine count is the server's; a server's close is
// seen as the peer hanging up (EPOLLRDHUP), the client never closes first.
func TestSlowloris(t *testing.T) {
	const slowConns, honestClients = 5000, 100
	timeout := 3 * time.Second
	if os.Getenv("DUPLEX_LONG") == "1" {
		timeout = 10 * time.Second
	}
	// A cut is due timeout after the server's accept; the slack covers a
	// late accept and 5000 goroutines woken at once on a busy machine
	// (cuts come within 0.3 s of the timeout here with -race, when the
	// connects are paced: see startTrickle). Without the header timeout a
	// connection lives as long as it trickles, some 150 s.
	slack := timeout + 5*time.Second
	raiseFileLimit(t, 2*slowConns+4*honestClients+256)

	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-broker", "memory", "-handshake-timeout", timeout.String()}, nil)
	if len(srv.logs.linesWith("msg=listening", "handshake_timeout="+timeout.String())) != 1 {
		t.Errorf("the listening line does not give the handshake timeout:\n%s", srv.logs)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*testTimeout+timeout+slack)
	defer cancel()
	warm := dialChat(t, ctx, srv.addr) // pools and the echo path, before the baseline
	echo(t, ctx, warm, "warm up")
	warm.Close(websocket.StatusNormalClosure, "")
	base := measureUsage()

	tr := startTrickle(t, srv.addr, slowConns)
	cuts := make(chan []slowConn, 1)
	go func() { cuts <- tr.run(tr.lastOpened.Add(timeout + slack + time.Second)) }()

	// The honest clients connect and echo while the slow ones hold their
	// sockets, then stay open until the peak is measured.
	var (
		dials, echoes latencies
		wg            sync.WaitGroup
		mu            sync.Mutex
		failures      []error
		ok            int
	)
	connected := make(chan *websocket.Conn, honestClients)
	for i := range honestClients {
		wg.Go(func() {
			start := time.Now()
			c, _, err := websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{Header: originHeader(srv.addr)})
			if err == nil {
				dials.add(time.Since(start))
				for j := 0; j < 3 && err == nil; j++ {
					start = time.Now()
					if err = echoOnce(ctx, c, fmt.Sprintf("honest %d/%d", i, j)); err == nil {
						echoes.add(time.Since(start))
					}
				}
				connected <- c
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err)
			} else {
				ok++
			}
		})
	}
	wg.Wait()
	close(connected)
	openWhenHonestDone := tr.open()
	peak := measureUsage()
	for c := range connected {
		c.Close(websocket.StatusNormalClosure, "")
	}
	if ok != honestClients {
		t.Errorf("%d of %d honest clients connected and echoed; failures: %v", ok, honestClients, failures)
	}

	conns := <-cuts
	var lifetimes latencies
	stillOpen, late, answered := 0, 0, 0
	for _, c := range conns {
		if c.cut.IsZero() {
			stillOpen++
			continue
		}
		life := c.cut.Sub(c.opened)
		lifetimes.add(life)
		if life > timeout+slack {
			late++
		}
		if c.got > 0 {
			answered++
		}
	}
	if stillOpen > 0 {
		t.Errorf("%d of %d slow connections were still open %v after the last one came: the server did not cut them", stillOpen, slowConns, timeout+slack+time.Second)
	}
	if late > 0 {
		t.Errorf("%d slow connections were cut later than the handshake timeout %v + %v", late, timeout, slack)
	}
	opened, answer := tr.lastOpened.Sub(tr.firstOpened), tr.answer
	conns = nil
	tr.release() // those the server left open, if any, and the test's own records of them
	after := awaitBaseline(t, base, peak)
	t.Logf("handshake timeout %v; %d slow connections opened in %v", timeout, slowConns, opened.Round(time.Millisecond))
	t.Logf("slow connections' lives, from connect to the server's hang-up: %v; %d answered before the hang-up: %q",
		&lifetimes, answered, answer)
	t.Logf("honest clients: %d/%d connected and echoed, with %d slow connections open when they were done; dial %v; echo %v",
		ok, honestClients, openWhenHonestDone, &dials, &echoes)
	t.Logf("baseline: %v", base)
	t.Logf("peak:     %v", peak)
	t.Logf("after:    %v", after)
}

// raiseFileLimit raises the soft limit of open files to the hard one when
// need is more than the soft limit (Go does so at start-up already), and
// skips the test when even the hard one is too low.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("needs %d open files; the hard limit is %d", need, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// slowHandshake is what the slow connections send, one byte at a time.
const slowHandshake = "GET /chat/connect HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// trickle is a set of raw sockets that send slowHandshake one byte per
// second each, watched by one epoll set.
type trickle struct {
	t                       *testing.T
	epfd                    int
	conns                   []slowConn
	byFD                    map[int32]int // index in conns
	firstOpened, lastOpened time.Time
	answer                  string // the first bytes a server sent before hanging up, for the log

	mu       sync.Mutex
	openNow  int
	released bool
}

type slowConn struct {
	fd          int
	opened, cut time.Time // cut: when the server hung up; zero while open
	sent, got   int       // bytes sent, and received from the server
}

// startTrickle connects n sockets to addr, each sending the first byte.
// They are closed at the end of the test if the server has not closed them.
//
// The connects are paced, 250 every 50 ms, so that the kernel's accept
// queue (somaxconn, 4096 here) does not overflow while a loaded machine
// runs the server's accept loop late: past it the kernel drops the
// handshake's last ACK and new SYNs, and the clients, slow and honest, wait
// for their retransmissions (1, 3, 7, 15 s) instead of for the server. That
// is a SYN flood, the kernel's to answer, not the server's.
func startTrickle(t *testing.T, addr string, n int) *trickle {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trickle{t: t, epfd: epfd, byFD: make(map[int32]int, n)}
	t.Cleanup(tr.release)
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	tr.firstOpened = time.Now()
	for i := range n {
		if i > 0 && i%250 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		if err := syscall.Connect(fd, sa); err != nil {
			syscall.Close(fd)
			t.Fatalf("connect %d: %v", i, err)
		}
		c := slowConn{fd: fd, opened: time.Now()}
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		if _, err := syscall.SendmsgN(fd, []byte(slowHandshake[:1]), nil, nil, syscall.MSG_NOSIGNAL); err == nil {
			c.sent = 1
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			t.Fatal(err)
		}
		tr.byFD[int32(fd)] = len(tr.conns)
		tr.conns = append(tr.conns, c)
	}
	tr.lastOpened = time.Now()
	tr.openNow = n
	return tr
}

// open returns how many sockets the server has not closed yet.
func (tr *trickle) open() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.openNow
}

// run sends a byte on every open socket each second and records the
// server's hang-ups, until every socket is cut or deadline passes. It
// returns the sockets; those still open stay so until release.
func (tr *trickle) run(deadline time.Time) []slowConn {
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 4096)
	next := time.Now().Add(time.Second)
	for tr.open() > 0 && time.Now().Before(deadline) {
		ms := int(min(100*time.Millisecond, max(0, time.Until(next))) / time.Millisecond)
		n, err := syscall.EpollWait(tr.epfd, events, ms)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			tr.t.Errorf("epoll_wait: %v", err)
			break
		}
		now := time.Now()
	events:
		for _, ev := range events[:max(n, 0)] {
			c := &tr.conns[tr.byFD[ev.Fd]]
			if !c.cut.IsZero() {
				continue
			}
			// Whatever the server said before hanging up (net/http says
			// nothing on a header timeout), then the end.
			for {
				m, err := syscall.Read(c.fd, buf)
				if m > 0 {
					if c.got == 0 && tr.answer == "" {
						tr.answer = string(buf[:m])
					}
					c.got += m
					continue
				}
				if m == 0 || !errors.Is(err, syscall.EAGAIN) {
					break
				}
				// Readable without an end: the server answered but is
				// still there. Wait for its hang-up.
				continue events
			}
			c.cut = now
			syscall.Close(c.fd) // leaves the epoll set with it
			tr.mu.Lock()
			tr.openNow--
			tr.mu.Unlock()
		}
		if !now.Before(next) {
			for i := range tr.conns {
				c := &tr.conns[i]
				if c.cut.IsZero() && c.sent < len(slowHandshake) {
					if _, err := syscall.SendmsgN(c.fd, []byte(slowHandshake[c.sent:c.sent+1]), nil, nil, syscall.MSG_NOSIGNAL); err == nil {
						c.sent++
					}
				}
			}
			next = next.Add(time.Second)
		}
	}
	return slices.Clone(tr.conns)
}

// release closes the sockets the server left open, and the epoll set. It
// must not run beside run.
func (tr *trickle) release() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.released {
		return
	}
	tr.released = true
	for _, c := range tr.conns {
		if c.cut.IsZero() {
			syscall.Close(c.fd)
		}
	}
	syscall.Close(tr.epfd)
	tr.conns, tr.byFD = nil, nil
}
