//go:build linux

// Package loadgen is the benchmark's load generator: one goroutine driving a
// raw epoll set over every connection, with frames built once before the run
// and a parser that reads no more of a server frame than its header (and,
// where it must, the first bytes of the payload).
//
// Lean is the point: on a 2-core machine a client that spends a goroutine, a
// bufio.Reader and a full frame decoder per connection saturates before the
// fastest servers do. Here a message costs the generator one read and one
// write system call, amortised over everything epoll_wait returns at once.
//
// Modes:
//   - echo: every connection keeps Depth messages in flight and sends the next
//     when one comes back; throughput and round-trip latency are measured
//     after a warm-up.
//   - idle: connections are opened and held silent, growing on command, so
//     that the harness can read the server's memory.
//   - broadcast: connection 0 publishes, every connection (the publisher too)
//     is a subscriber; at most Window messages are in flight, a message
//     retires when every subscriber has it, and each delivery's lag from the
//     publish time is recorded. With JSON the messages are text, a JSON
//     string that ends in the sequence number and the send time, and the lag
//     is the receive time minus the embedded send time, wherever the string
//     sits in what the server delivers (the hub wraps it in its pub push).
//     With HubRoom the server is a hub (package hub): every connection but
//     the publisher sends the protocol's connect and subscribe commands once
//     open and the run starts when every subscribe has been answered; the
//     publisher opens PubPath instead and is no subscriber.
package loadgen

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/duplexws/duplex/bench/internal/hexstamp"
)

// Modes.
const (
	ModeEcho      = "echo"
	ModeIdle      = "idle"
	ModeBroadcast = "broadcast"
)

// Config describes one load run.
type Config struct {
	Addr       string        // server address, IPv4 "host:port"
	Proto      string        // "ws" (RFC 6455) or "tcp" (length-prefixed floor)
	Path       string        // websocket path; default "/ws"
	Mode       string        // ModeEcho, ModeIdle or ModeBroadcast
	Conns      int           // connections (echo, idle: initial; broadcast: subscribers besides the publisher)
	Payload    int           // message payload in bytes (broadcast: at least 16)
	Depth      int           // echo: messages in flight per connection; default 1
	Window     int           // broadcast: messages in flight; default 4
	Compress   bool          // offer permessage-deflate and send deflated frames
	Warmup     time.Duration // echo, broadcast: load before measuring
	Duration   time.Duration // echo, broadcast: measured time
	PerIP      int           // connections per source address 127.0.0.x (x from 2); default 1000
	MaxDialing int           // connections being opened at once; default 256
	Verify     bool          // check every connection's first echo byte for byte
	Chat       int           // idle: messages (~200 B of chat-like JSON, different each) each connection sends once open, before going idle
	JSON       bool          // broadcast: text messages, a JSON string of Payload bytes (at least 40) ending in the hex sequence number and send time in ns
	HubRoom    string        // broadcast through a hub: subscribers connect and subscribe to this room (hub wire protocol) before the run; implies JSON
	PubPath    string        // HubRoom: the publisher's path, a plain WebSocket whose messages the server publishes to the room given as ?room=; default "/pub"
}

// Event tells the driver where a run is.
type Event struct {
	Kind string // "connected", "ready" (broadcast: subscribers seated), "measure-start", "measure-end"
	N    int    // connected: the number of open connections
}

// Command steers an idle run: Grow to N open connections, or Stop (N < 0).
type Command struct{ N int }

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	Mode       string  `json:"mode"`
	Conns      int     `json:"conns"`            // connections open at the end of the connect phase
	Failed     int     `json:"failed"`           // connections that could not be opened
	Negotiated int     `json:"negotiated"`       // connections whose handshake accepted permessage-deflate
	Errors     int     `json:"errors"`           // connections lost during the run
	Seconds    float64 `json:"seconds"`          // measured time
	Msgs       int64   `json:"msgs"`             // echo: round trips completed in the measured time
	Bytes      int64   `json:"bytes"`            // payload bytes received in the measured time
	Published  int64   `json:"published"`        // broadcast: messages published in the measured time
	Deliveries int64   `json:"deliveries"`       // broadcast: deliveries received in the measured time
	Lost       int64   `json:"lost"`             // broadcast: deliveries given up after the retire timeout
	P50        float64 `json:"p50_us"`           // echo: round trip; broadcast: delivery lag
	P99        float64 `json:"p99_us"`           //
	P999       float64 `json:"p999_us"`          //
	Max        float64 `json:"max_us"`           //
	CPU        float64 `json:"cpu_seconds"`      // the generator's own CPU time in the measured time
	Total      int64   `json:"total"`            // echo messages or deliveries, warm-up included; idle: chat echoes
	Subscribed int     `json:"subscribed"`       // HubRoom: subscriptions the hub confirmed before the run
	VerifyErr  string  `json:"verify,omitempty"` // first verification failure
}

const (
	stDialing = iota
	stHandshake
	stOpen
	stClosed
)

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

type slot struct {
	seq    uint64
	sentAt int64
	got    int
	live   bool
}

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
	expected []byte   // payload as the server should echo it (uncompressed)
	frame    []byte   // the (first) message's frame
	payloads [][]byte // echo: the distinct payloads sent in turn
	sendBuf  []byte   // echo: the distinct frames back to back, repeated
	sendOffs []int    // echo: offset of each frame in sendBuf, and the end
	roundLen int      // echo: bytes of one round of distinct frames

	dialing, open, failed, errors, negotiated int
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

// Run performs one load run. Events, if not nil, is called at each milestone;
// ctl, if not nil, steers an idle run (which otherwise ends at once after
// connecting).
func Run(cfg Config, ctl <-chan Command, events func(Event)) (Result, error) {
	if cfg.Path == "" {
		cfg.Path = "/ws"
	}
	if cfg.Depth <= 0 {
		cfg.Depth = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = 4
	}
	if cfg.Window > 32 {
		cfg.Window = 32
	}
	if cfg.PerIP <= 0 {
		cfg.PerIP = 1000
	}
	if cfg.MaxDialing <= 0 {
		cfg.MaxDialing = 256
	}
	if cfg.HubRoom != "" {
		cfg.JSON = true
		if cfg.PubPath == "" {
			cfg.PubPath = "/pub"
		}
	}
	if events == nil {
		events = func(Event) {}
	}
	g := &gen{cfg: cfg, base: time.Now(), ws: cfg.Proto != "tcp"}
	if err := g.setup(); err != nil {
		return Result{}, err
	}
	defer g.teardown()

	res := Result{Mode: cfg.Mode}
	total := cfg.Conns
	if cfg.Mode == ModeBroadcast {
		total++ // the publisher
	}
	if err := g.connect(total); err != nil {
		return res, err
	}
	events(Event{Kind: "connected", N: g.open})
	res.Conns, res.Failed, res.Negotiated = g.open, g.failed, g.negotiated

	switch cfg.Mode {
	case ModeIdle:
		for ctl != nil {
			cmd, ok := <-ctl
			if !ok || cmd.N < 0 {
				break
			}
			if err := g.connect(cmd.N); err != nil {
				return res, err
			}
			res.Conns, res.Failed, res.Negotiated = g.open, g.failed, g.negotiated
			events(Event{Kind: "connected", N: g.open})
		}
		if g.cfg.Chat > 0 { // read the last echoes of the chat messages
			if err := g.pollFor(300 * time.Millisecond); err != nil {
				return res, err
			}
			res.Total = g.total
		}
	case ModeEcho, ModeBroadcast:
		if cfg.Mode == ModeBroadcast {
			if cfg.HubRoom != "" {
				if err := g.waitSubscribed(); err != nil {
					return res, err
				}
				res.Subscribed = g.subscribed
			}
			if err := g.pollFor(300 * time.Millisecond); err != nil { // let the server seat every subscriber
				return res, err
			}
			events(Event{Kind: "ready"})
			g.pub = g.conns[0]
			g.expect = g.open
			if cfg.HubRoom != "" {
				g.expect = g.subscribed
			}
		}
		if err := g.load(events); err != nil {
			return res, err
		}
		res.Seconds = float64(g.mEnd-g.mStart) / 1e9
		res.CPU = g.cpu1 - g.cpu0
		res.Total = g.total
		res.Msgs, res.Bytes = g.msgs, g.bytes
		res.Published, res.Deliveries, res.Lost = g.published, g.deliveries, g.lost
		res.P50 = g.hist.quantile(0.50) / 1e3
		res.P99 = g.hist.quantile(0.99) / 1e3
		res.P999 = g.hist.quantile(0.999) / 1e3
		res.Max = float64(g.hist.max) / 1e3
	default:
		return res, fmt.Errorf("loadgen: unknown mode %q", cfg.Mode)
	}
	res.Errors = g.errors
	res.VerifyErr = g.verifyErr
	return res, nil
}

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
		req += "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
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

	size := g.cfg.Payload
	if g.cfg.Mode == ModeBroadcast && size < 16 {
		size = 16
	}
	if g.cfg.Mode == ModeBroadcast && g.cfg.JSON {
		size = max(size, 40)
		g.expected, g.pubStamp = stampTemplate(size)
	} else {
		g.expected = Payload(size)
	}
	switch {
	case !g.ws:
		g.frame = TCPFrame(g.expected)
	case g.cfg.Compress:
		g.frame = ClientFrame(Deflate(g.expected), true)
	default:
		g.frame = ClientFrame(g.expected, false)
	}
	if g.cfg.Mode == ModeEcho {
		g.buildEchoFrames(size)
	}
	if g.cfg.Mode == ModeIdle && g.ws {
		for i := 0; i < g.cfg.Chat; i++ {
			p := PayloadSeed(200, int64(i)+1)
			if g.cfg.Compress {
				g.chat = append(g.chat, ClientFrame(Deflate(p), true)...)
			} else {
				g.chat = append(g.chat, ClientFrame(p, false)...)
			}
		}
	}
	if g.cfg.Mode == ModeBroadcast {
		if g.cfg.JSON {
			if !g.ws {
				return errors.New("loadgen: JSON broadcast is over WebSocket")
			}
			g.frame = ClientText(g.expected)
		}
		g.pubTemplate = g.frame
		if g.ws {
			g.pubHdr = len(g.frame) - len(g.expected)
		} else {
			g.pubHdr = 4
		}
		if g.cfg.Compress {
			return errors.New("loadgen: broadcast is uncompressed")
		}
	}
	return nil
}

func (g *gen) teardown() {
	for _, c := range g.conns {
		if c.state != stClosed {
			unix.Close(c.fd)
			c.state = stClosed
		}
	}
	unix.Close(g.ep)
}

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
	if g.cfg.Mode == ModeEcho {
		c.times = make([]int64, g.cfg.Depth)
		c.first = c.idx % len(g.payloads)
		c.next, c.woff, c.pending = c.first, g.sendOffs[c.first], 0
	}
	if g.running && g.cfg.Mode == ModeEcho {
		g.queue(c, g.cfg.Depth)
	}
	if g.subCmds != nil && c.idx != 0 { // a hub subscriber: connect and subscribe at once
		if n, err := unix.Write(c.fd, g.subCmds); err != nil || n != len(g.subCmds) {
			g.lose(c)
			return
		}
		c.subscribing, c.replies = true, 0
		g.subscribing++
	}
	if len(g.chat) > 0 { // a fresh socket takes a few hundred bytes; the echoes wait in the kernel
		if n, err := unix.Write(c.fd, g.chat); err != nil || n != len(g.chat) {
			g.lose(c)
		}
	}
}

// waitSubscribed serves the connections until every hub subscriber has its
// subscribe reply (or was lost).
func (g *gen) waitSubscribed() error {
	deadline := time.Now().Add(30*time.Second + time.Duration(g.subscribing)*time.Millisecond)
	for g.subscribing > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: subscribe timeout with %d subscribed, %d waiting", g.subscribed, g.subscribing)
		}
		if err := g.poll(20); err != nil {
			return err
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

// load runs the warm-up and the measured time of an echo or broadcast run.
func (g *gen) load(events func(Event)) error {
	g.running = true
	now := g.now()
	if g.cfg.Mode == ModeEcho {
		for _, c := range g.conns {
			if c.state == stOpen {
				g.queue(c, g.cfg.Depth)
			}
		}
	} else {
		g.publish(now)
	}
	warmEnd := now + int64(g.cfg.Warmup)
	for {
		if !g.measuring && now >= warmEnd {
			g.startMeasure(events)
		}
		if err := g.poll(5); err != nil {
			return err
		}
		now = g.now()
		if g.measuring && now-g.mStart >= int64(g.cfg.Duration) {
			g.measuring = false
			g.running = false
			g.mEnd = now
			g.cpu1 = selfCPU()
			events(Event{Kind: "measure-end"})
			return nil
		}
		if g.cfg.Mode == ModeBroadcast {
			g.retireStale(now)
			g.publish(now)
		}
	}
}

func (g *gen) startMeasure(events func(Event)) {
	g.hist.reset()
	g.msgs, g.bytes, g.published, g.deliveries, g.lost = 0, 0, 0, 0, 0
	g.measuring = true
	events(Event{Kind: "measure-start"})
	g.cpu0 = selfCPU()
	g.mStart = g.now()
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
	crlf2       = []byte("\r\n\r\n")
	switching   = []byte("HTTP/1.1 101")
	deflateResp = []byte("permessage-deflate")
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
	if g.cfg.Compress && bytes.Contains(bytes.ToLower(head), deflateResp) {
		g.negotiated++
	}
	rest := append([]byte(nil), c.hs[end+4:]...)
	g.opened(c)
	if len(rest) > 0 {
		g.parse(c, rest, now)
	}
}

func rawRead(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

func rawWrite(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

// readFrames reads once (epoll is level-triggered: what is left comes back at
// the next wait) and parses what came.
func (g *gen) readFrames(c *conn, now int64) {
	n, e := rawRead(c.fd, g.rbuf)
	if e != 0 {
		if e == unix.EAGAIN || e == unix.EINTR {
			return
		}
		g.lose(c)
		return
	}
	if n == 0 {
		g.lose(c)
		return
	}
	done := g.parse(c, g.rbuf[:n], now)
	if done > 0 && g.running && g.cfg.Mode == ModeEcho && c.state == stOpen {
		g.queue(c, done)
	}
}

// parse consumes server bytes and returns the number of whole echo messages.
func (g *gen) parse(c *conn, b []byte, now int64) int {
	done := 0
	for len(b) > 0 {
		if !c.inPayload {
			var hl int
			var h []byte
			if c.hdrN == 0 && len(b) >= 4 && (g.ws && len(b) >= wsHeaderLen(b[1]) || !g.ws) {
				if g.ws {
					hl = wsHeaderLen(b[1])
				} else {
					hl = 4
				}
				h, b = b[:hl], b[hl:]
			} else {
				for len(b) > 0 {
					c.hdr[c.hdrN] = b[0]
					c.hdrN++
					b = b[1:]
					if g.ws && c.hdrN >= 2 && int(c.hdrN) >= wsHeaderLen(c.hdr[1]) || !g.ws && c.hdrN == 4 {
						break
					}
				}
				if g.ws && (c.hdrN < 2 || int(c.hdrN) < wsHeaderLen(c.hdr[1])) || !g.ws && c.hdrN < 4 {
					return done
				}
				h = c.hdr[:c.hdrN]
				c.hdrN = 0
			}
			if g.ws {
				c.fin = h[0]&0x80 != 0
				c.op = h[0] & 0x0f
				if c.op != 0 { // RSV1 marks a compressed message on its first frame only
					c.rsv1 = h[0]&0x40 != 0
				}
				switch l := h[1] & 0x7f; l {
				case 126:
					c.remain = int64(binary.BigEndian.Uint16(h[2:]))
				case 127:
					c.remain = int64(binary.BigEndian.Uint64(h[2:]))
				default:
					c.remain = int64(l)
				}
			} else {
				c.fin, c.op = true, 2
				c.remain = int64(binary.BigEndian.Uint32(h))
			}
			if c.op != 0 {
				c.msgBytes = 0
			}
			c.seen = 0
			c.inPayload = true
			if c.remain == 0 {
				c.inPayload = false
				done += g.frameDone(c, now)
			}
			continue
		}
		n := int64(len(b))
		if n > c.remain {
			n = c.remain
		}
		p := b[:n]
		if g.cfg.Mode == ModeBroadcast {
			if c.seen < int64(len(c.head)) {
				copy(c.head[c.seen:], p)
			}
			if g.cfg.JSON {
				c.keepTail(p)
			}
		}
		if !c.checked && c.op != 0x8 && c.op != 0x9 && c.op != 0xA && g.cfg.Verify {
			c.vbuf = append(c.vbuf, p...)
		}
		c.seen += n
		c.msgBytes += n
		c.remain -= n
		b = b[n:]
		if c.remain == 0 {
			c.inPayload = false
			done += g.frameDone(c, now)
		}
	}
	return done
}

// frameDone handles a whole frame and returns 1 when it ended an echo message.
func (g *gen) frameDone(c *conn, now int64) int {
	switch c.op {
	case 0x8: // close
		g.lose(c)
		return 0
	case 0x9, 0xA: // ping, pong: servers here send none unasked
		return 0
	}
	if !c.fin {
		return 0
	}
	if !c.checked {
		c.checked = true
		g.check(c)
	}
	switch g.cfg.Mode {
	case ModeEcho:
		if c.inflight == 0 {
			return 0
		}
		c.inflight--
		g.total++
		sent := c.times[c.th]
		c.th++
		if c.th == len(c.times) {
			c.th = 0
		}
		if g.measuring {
			g.hist.record(now - sent)
			g.msgs++
			g.bytes += c.msgBytes
		}
		return 1
	case ModeBroadcast:
		switch {
		case c.subscribing:
			g.subscribeReply(c)
		case g.cfg.JSON:
			seq, sent, ok := stamp(c.tail[:])
			if !ok || c.msgBytes < int64(len(c.tail)) {
				g.setVerifyErr(fmt.Sprintf("a delivery without a stamp at its end: %q", c.tail[:]))
				return 0
			}
			g.delivered(seq, now, sent, c.msgBytes)
		default:
			g.delivered(binary.LittleEndian.Uint64(c.head[:8]), now, -1, c.seen)
		}
	case ModeIdle:
		g.total++ // an echo of a chat message
	}
	return 0
}

// check compares the first message of a connection with what was sent.
func (g *gen) check(c *conn) {
	if !g.cfg.Verify {
		return
	}
	got := c.vbuf
	c.vbuf = nil
	if g.cfg.Mode != ModeEcho {
		return
	}
	if c.rsv1 {
		var err error
		if got, err = Inflate(got); err != nil {
			g.setVerifyErr(fmt.Sprintf("inflate: %v", err))
			return
		}
	}
	want := g.payloads[c.first%len(g.payloads)]
	if !bytes.Equal(got, want) {
		g.setVerifyErr(fmt.Sprintf("echo differs: got %d bytes, want %d", len(got), len(want)))
	}
}

func (g *gen) setVerifyErr(s string) {
	if g.verifyErr == "" {
		g.verifyErr = s
	}
}

// queue adds k echo messages to c's output and writes what it can.
func (g *gen) queue(c *conn, k int) {
	now := g.now()
	for i := 0; i < k; i++ {
		c.times[c.tt] = now
		c.tt++
		if c.tt == len(c.times) {
			c.tt = 0
		}
		c.pending += g.sendOffs[c.next+1] - g.sendOffs[c.next]
		c.next++
	}
	c.inflight += k
	g.flush(c)
}

// flush writes c's pending output until done or the socket is full.
func (g *gen) flush(c *conn) {
	if c == g.pub && g.cfg.Mode == ModeBroadcast {
		g.flushPub()
		return
	}
	defer g.rewind(c)
	for c.pending > 0 {
		n, e := rawWrite(c.fd, g.sendBuf[c.woff:c.woff+c.pending])
		if e != 0 {
			if e == unix.EAGAIN {
				g.wantOut(c, true)
				return
			}
			if e == unix.EINTR {
				continue
			}
			g.lose(c)
			return
		}
		c.pending -= n
		c.woff += n
	}
	g.wantOut(c, false)
}

// rewind steps c back by whole rounds of frames once they are written: the
// bytes ahead are the same, and sendBuf holds enough rounds for Depth frames
// past the first.
func (g *gen) rewind(c *conn) {
	for c.woff >= g.roundLen {
		c.woff -= g.roundLen
		c.next -= len(g.payloads)
	}
}

// buildEchoFrames prepares what echo connections send: one payload, or with
// compression 64 different ones sent in turn, so that a server keeping the
// compression context cannot send a message back as a reference to the
// previous, identical one.
func (g *gen) buildEchoFrames(size int) {
	k := 1
	if g.cfg.Compress {
		k = 64
	}
	g.payloads = [][]byte{g.expected}
	for i := 1; i < k; i++ {
		g.payloads = append(g.payloads, PayloadSeed(size, int64(size)+int64(i)<<32))
	}
	var round [][]byte
	for _, p := range g.payloads {
		switch {
		case !g.ws:
			round = append(round, TCPFrame(p))
		case g.cfg.Compress:
			round = append(round, ClientFrame(Deflate(p), true))
		default:
			round = append(round, ClientFrame(p, false))
		}
	}
	rounds := 1 + (g.cfg.Depth+1+k-1)/k
	for r := 0; r < rounds; r++ {
		for _, f := range round {
			g.sendOffs = append(g.sendOffs, len(g.sendBuf))
			g.sendBuf = append(g.sendBuf, f...)
		}
	}
	g.sendOffs = append(g.sendOffs, len(g.sendBuf))
	g.roundLen = g.sendOffs[k]
}

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

// publish sends broadcast messages while fewer than Window are in flight.
func (g *gen) publish(now int64) {
	if !g.running || g.pub == nil || g.pub.state != stOpen {
		return
	}
	for g.outstanding < g.cfg.Window {
		g.seq++
		s := &g.slots[g.seq%uint64(len(g.slots))]
		*s = slot{seq: g.seq, sentAt: now, live: true}
		g.outstanding++
		if g.measuring {
			g.published++
		}
		start := len(g.pubOut)
		g.pubOut = append(g.pubOut, g.pubTemplate...)
		if g.cfg.JSON {
			var sb [32]byte
			hexstamp.Put(sb[:16], g.seq)
			hexstamp.Put(sb[16:], uint64(now))
			for i, b := range sb {
				j := g.pubStamp + i // index in the payload
				g.pubOut[start+g.pubHdr+j] = b ^ maskKey[j&3]
			}
			continue
		}
		var sb [8]byte
		binary.LittleEndian.PutUint64(sb[:], g.seq)
		for i := 0; i < 8; i++ {
			b := sb[i]
			if g.ws {
				b ^= maskKey[i&3]
			}
			g.pubOut[start+g.pubHdr+i] = b
		}
	}
	g.flushPub()
}

func (g *gen) flushPub() {
	c := g.pub
	if c == nil || c.state != stOpen {
		return
	}
	for len(g.pubOut) > 0 {
		n, e := rawWrite(c.fd, g.pubOut)
		if e != 0 {
			if e == unix.EAGAIN {
				g.wantOut(c, true)
				return
			}
			if e == unix.EINTR {
				continue
			}
			g.lose(c)
			return
		}
		g.pubOut = g.pubOut[:copy(g.pubOut, g.pubOut[n:])]
	}
	g.wantOut(c, false)
}

// delivered counts one delivery of message seq; sent is the send time the
// message carried (JSON), or -1 to take the publisher's record of it.
func (g *gen) delivered(seq uint64, now, sent int64, size int64) {
	s := &g.slots[seq%uint64(len(g.slots))]
	if !s.live || s.seq != seq {
		return // retired already (by timeout)
	}
	if sent < 0 {
		sent = s.sentAt
	}
	s.got++
	g.total++
	if g.measuring {
		g.hist.record(now - sent)
		g.deliveries++
		g.bytes += size
	}
	if s.got >= g.expect {
		s.live = false
		g.outstanding--
		g.publish(now)
	}
}

// retireStale gives up on messages older than 2 s, so that one lost delivery
// does not stop the run.
func (g *gen) retireStale(now int64) {
	for i := range g.slots {
		s := &g.slots[i]
		if s.live && now-s.sentAt > int64(2*time.Second) {
			s.live = false
			g.outstanding--
			if g.measuring {
				g.lost += int64(g.expect - s.got)
			}
		}
	}
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// subscribeReply reads the replies to a hub subscriber's connect (id 1) and
// subscribe (id 2); the subscriber counts once the second is a result.
func (g *gen) subscribeReply(c *conn) {
	c.replies++
	want := fmt.Sprintf(`{"id":%d,"result"`, c.replies)
	if !bytes.HasPrefix(c.head[:], []byte(want)) {
		g.setVerifyErr(fmt.Sprintf("hub reply %d: %q", c.replies, c.head[:]))
		g.lose(c)
		return
	}
	if c.replies == 2 {
		c.subscribing = false
		g.subscribing--
		g.subscribed++
	}
}

// keepTail keeps the last bytes of the message being read.
func (c *conn) keepTail(p []byte) {
	if len(p) >= len(c.tail) {
		copy(c.tail[:], p[len(p)-len(c.tail):])
		return
	}
	copy(c.tail[:], c.tail[len(p):])
	copy(c.tail[len(c.tail)-len(p):], p)
}

// stampTemplate is a JSON string of size bytes (at least 40) that ends in
// 32 hex digits and its closing quote, and where those digits start.
func stampTemplate(size int) ([]byte, int) {
	b := make([]byte, size)
	b[0], b[size-1] = '"', '"'
	for i := 1; i < size-33; i++ {
		b[i] = 'a' + byte(i%26)
	}
	for i := size - 33; i < size-1; i++ {
		b[i] = '0'
	}
	return b, size - 33
}

// stamp reads the sequence number and send time from the end of a JSON
// delivery: the stamped string, optionally followed by the '}' of an
// envelope around it (the hub's pub push ends with its data).
func stamp(tail []byte) (seq uint64, sent int64, ok bool) {
	t := tail
	if t[len(t)-1] == '}' {
		t = t[:len(t)-1]
	}
	if len(t) < 33 || t[len(t)-1] != '"' {
		return 0, 0, false
	}
	h := t[len(t)-33 : len(t)-1]
	seq, ok1 := hexstamp.Parse(h[:16])
	ts, ok2 := hexstamp.Parse(h[16:])
	return seq, int64(ts), ok1 && ok2
}
