//go:build linux

package loadgen

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Connection states.
const (
	stDialing = iota
	stHandshake
	stOpen
	stClosed
)

// conn is one connection: its socket and state, its frame parser, and what
// the run's mode keeps per connection.
type conn struct {
	fd     int
	idx    int
	state  uint8
	tries  uint8
	outReg bool // EPOLLOUT registered
	hs     []byte
	dialAt int64

	// frame parser
	inPayload bool
	hdrN      uint8
	hdr       [14]byte
	fin       bool
	rsv1      bool
	op        byte
	remain    int64
	seen      int64    // payload bytes of the current frame seen so far
	head      [16]byte // the first bytes of the current frame's payload (broadcast)
	tail      [40]byte // the last bytes of the current message (JSON broadcast)

	// HubRoom: connect and subscribe are sent, their replies not all read
	subscribing bool
	replies     int

	// verification of the first message
	checked bool
	vbuf    []byte

	// echo sender
	pending  int   // bytes queued, not yet written
	woff     int   // position in sendBuf of the next byte to write
	next     int   // index in sendOffs of the next frame to queue
	first    int   // index of the first frame sent, for verification
	msgBytes int64 // payload bytes of the current message, all its frames
	inflight int
	times    []int64 // ring of send times, one per message in flight
	th, tt   int
}

// gen is one load run: the epoll set over every connection, the frames and
// requests built once before it, and the counters of the measured window.
type gen struct {
	cfg   Config
	chat  []byte // idle: the Chat frames every connection sends once open
	dst   unix.SockaddrInet4
	ep    int
	ws    bool
	base  time.Time
	conns []*conn
	byFd  []*conn
	rbuf  []byte
	evs   []unix.EpollEvent

	request  []byte   // handshake request
	pubReq   []byte   // HubRoom: the publisher's handshake request
	subCmds  []byte   // HubRoom: the connect and subscribe commands, framed
	payloads [][]byte // echo: the distinct payloads sent in turn
	sendBuf  []byte   // echo: the distinct frames back to back, repeated
	sendOffs []int    // echo: offset of each frame in sendBuf, and the end
	roundLen int      // echo: bytes of one round of distinct frames

	dialing, open, failed, errors, negotiated int
	extension                                 string // the first Sec-WebSocket-Extensions a server answered with
	nextDial                                  int
	target                                    int

	running   bool // sending load
	measuring bool
	mStart    int64
	mEnd      int64
	cpu0      float64
	cpu1      float64
	total     int64
	hist      hist
	msgs      int64
	bytes     int64
	verifyErr string

	// broadcast
	pub         *conn
	pubOut      []byte
	pubTemplate []byte
	pubHdr      int
	pubStamp    int // JSON: where in the payload the 32 hex digits of sequence number and send time start
	seq         uint64
	slots       [64]slot
	outstanding int
	expect      int
	published   int64
	deliveries  int64
	lost        int64
	subscribing int // HubRoom: subscribers waiting for their subscribe reply
	subscribed  int
}

func (g *gen) now() int64 { return int64(time.Since(g.base)) }

// setup resolves the server's address, raises the open-file limit, creates
// the epoll set and builds the handshake request and the mode's frames.
func (g *gen) setup() error {
	host, port, err := net.SplitHostPort(g.cfg.Addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return fmt.Errorf("loadgen: %q is not an IPv4 address", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	g.dst.Port = p
	copy(g.dst.Addr[:], ip)

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	g.byFd = make([]*conn, lim.Cur+16)

	g.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	g.rbuf = make([]byte, 256<<10)
	g.evs = make([]unix.EpollEvent, 1024)

	req := "GET " + g.cfg.Path + " HTTP/1.1\r\nHost: " + g.cfg.Addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if g.cfg.Compress {
		req += deflateOffer
	}
	if g.cfg.HubRoom != "" {
		pub := strings.Replace(req, "GET "+g.cfg.Path+" ", "GET "+g.cfg.PubPath+"?room="+url.QueryEscape(g.cfg.HubRoom)+" ", 1)
		g.pubReq = []byte(pub + "\r\n")
		req += "Sec-WebSocket-Protocol: duplex.v1.json\r\n"
		room, _ := json.Marshal(g.cfg.HubRoom)
		g.subCmds = append(ClientText([]byte(`{"id":1,"op":"connect"}`)),
			ClientText([]byte(`{"id":2,"op":"subscribe","room":`+string(room)+`}`))...)
	}
	g.request = []byte(req + "\r\n")

	switch g.cfg.Mode {
	case ModeEcho:
		g.buildEchoFrames()
	case ModeIdle:
		g.buildChat()
	case ModeBroadcast:
		return g.buildPublish()
	}
	return nil
}

// frameOf is the frame this run sends for payload p: length-prefixed for
// the TCP floor, masked and, with Compress, deflated for WebSocket.
func (g *gen) frameOf(p []byte) []byte {
	switch {
	case !g.ws:
		return TCPFrame(p)
	case g.cfg.Compress:
		return ClientFrame(Deflate(p), true)
	}
	return ClientFrame(p, false)
}

// teardown closes every connection and the epoll set.
func (g *gen) teardown() {
	for _, c := range g.conns {
		if c.state != stClosed {
			unix.Close(c.fd)
			c.state = stClosed
		}
	}
	unix.Close(g.ep)
}

// poll waits up to ms milliseconds for events and serves them.
func (g *gen) poll(ms int) error {
	n, err := unix.EpollWait(g.ep, g.evs, ms)
	if err != nil {
		if err == unix.EINTR {
			return nil
		}
		return err
	}
	now := g.now()
	for i := 0; i < n; i++ {
		ev := &g.evs[i]
		c := g.byFd[ev.Fd]
		if c == nil {
			continue
		}
		switch c.state {
		case stDialing:
			if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				g.fail(c)
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				g.connected(c)
			}
		case stHandshake:
			g.readHandshake(c, now)
		case stOpen:
			if ev.Events&unix.EPOLLIN != 0 || ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				g.readFrames(c, now)
			}
			if c.state == stOpen && ev.Events&unix.EPOLLOUT != 0 {
				g.flush(c)
			}
		}
	}
	return nil
}

// pollFor keeps serving the connections for d without sending.
func (g *gen) pollFor(d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := g.poll(10); err != nil {
			return err
		}
	}
	return nil
}

// wantOut registers or drops c's interest in EPOLLOUT: on while its output
// waits for room in the socket.
func (g *gen) wantOut(c *conn, on bool) {
	if c.outReg == on {
		return
	}
	c.outReg = on
	ev := uint32(unix.EPOLLIN)
	if on {
		ev |= unix.EPOLLOUT
	}
	_ = unix.EpollCtl(g.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: ev, Fd: int32(c.fd)})
}

func rawRead(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

func rawWrite(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

// setVerifyErr keeps the first verification failure of the run.
func (g *gen) setVerifyErr(s string) {
	if g.verifyErr == "" {
		g.verifyErr = s
	}
}
