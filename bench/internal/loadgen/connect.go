//go:build linux

package loadgen

import (
	"bytes"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// connect opens connections until target are open (or failed for good).
func (g *gen) connect(target int) error {
	g.target = target
	deadline := time.Now().Add(30*time.Second + time.Duration(target)*time.Millisecond)
	for {
		for g.dialing < g.cfg.MaxDialing && g.open+g.dialing+g.failed < g.target {
			c := &conn{idx: len(g.conns)}
			g.conns = append(g.conns, c)
			g.dial(c)
		}
		if g.dialing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: connect timeout with %d open, %d in progress, %d failed", g.open, g.dialing, g.failed)
		}
		if err := g.poll(20); err != nil {
			return err
		}
		// handshakes stuck for 5 s are retried
		now := g.now()
		for _, c := range g.conns[len(g.conns)-min(len(g.conns), 4*g.cfg.MaxDialing):] {
			if (c.state == stDialing || c.state == stHandshake) && now-c.dialAt > int64(5*time.Second) {
				g.fail(c)
			}
		}
	}
}

func (g *gen) dial(c *conn) {
	g.dialing++
	c.state = stDialing
	c.dialAt = g.now()
	c.inPayload, c.hdrN, c.hs = false, 0, nil
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.fd = -1
		g.fail(c)
		return
	}
	c.fd = fd
	g.byFd[fd] = c
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	src := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, byte(2 + c.idx/g.cfg.PerIP%250)}}
	if err := unix.Bind(fd, src); err != nil {
		g.fail(c)
		return
	}
	if err := unix.Connect(fd, &g.dst); err != nil && err != unix.EINPROGRESS {
		g.fail(c)
		return
	}
	c.outReg = true
	if err := unix.EpollCtl(g.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
		g.fail(c)
	}
}

// fail closes a connection that is being opened, and retries it twice.
func (g *gen) fail(c *conn) {
	if c.fd >= 0 {
		unix.Close(c.fd)
		g.byFd[c.fd] = nil
	}
	c.state = stClosed
	g.dialing--
	c.tries++
	if c.tries < 3 {
		g.dial(c)
		return
	}
	g.failed++
}

// lose closes an open connection that broke during the run.
func (g *gen) lose(c *conn) {
	if c.state == stClosed {
		return
	}
	if c.state != stOpen {
		g.fail(c)
		return
	}
	unix.Close(c.fd)
	g.byFd[c.fd] = nil
	c.state = stClosed
	g.open--
	g.errors++
	if c.subscribing {
		c.subscribing = false
		g.subscribing--
	}
	if c == g.pub {
		g.pub = nil
		if g.cfg.HubRoom != "" {
			return // no subscriber
		}
	}
	if g.expect > 0 {
		g.expect--
	}
}

func (g *gen) opened(c *conn) {
	c.state = stOpen
	g.dialing--
	g.open++
	c.hs = nil
	if c.outReg {
		c.outReg = false
		_ = unix.EpollCtl(g.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.fd)})
	}
	switch g.cfg.Mode {
	case ModeEcho:
		g.startEcho(c)
	case ModeBroadcast:
		g.subscribe(c)
	case ModeIdle:
		g.sendChat(c)
	}
}

func (g *gen) connected(c *conn) {
	if e, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		g.fail(c)
		return
	}
	if !g.ws {
		g.opened(c)
		return
	}
	req := g.request
	if g.pubReq != nil && c.idx == 0 {
		req = g.pubReq
	}
	if n, err := unix.Write(c.fd, req); err != nil || n != len(req) {
		g.fail(c)
		return
	}
	c.state = stHandshake
	c.hs = make([]byte, 0, 512)
	c.outReg = false
	_ = unix.EpollCtl(g.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.fd)})
}

var (
	crlf2     = []byte("\r\n\r\n")
	switching = []byte("HTTP/1.1 101")
)

func (g *gen) readHandshake(c *conn, now int64) {
	n, err := unix.Read(c.fd, g.rbuf[:min(len(g.rbuf), 4096)])
	if n <= 0 {
		if err == unix.EAGAIN {
			return
		}
		g.fail(c)
		return
	}
	c.hs = append(c.hs, g.rbuf[:n]...)
	end := bytes.Index(c.hs, crlf2)
	if end < 0 {
		if len(c.hs) > 8192 {
			g.fail(c)
		}
		return
	}
	head := c.hs[:end]
	if !bytes.HasPrefix(head, switching) {
		if g.verifyErr == "" {
			line, _, _ := bytes.Cut(head, []byte("\r\n"))
			g.verifyErr = "handshake refused: " + string(line)
		}
		g.fail(c)
		return
	}
	if g.cfg.Compress {
		g.noteExtension(head)
	}
	rest := append([]byte(nil), c.hs[end+4:]...)
	g.opened(c)
	if len(rest) > 0 {
		g.parse(c, rest, now)
	}
}
