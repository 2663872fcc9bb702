package interop

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The servers' listeners are wrapped to parse the frames that cross the wire,
// so that the tests can check that a "whole" message really was one frame
// (the 7/16/64-bit length encodings are exercised) and that a fragmented one
// really was fragmented.

// frameInfo is one frame seen on the wire.
type frameInfo struct {
	op   byte
	fin  bool
	rsv1 bool // permessage-deflate: a compressed message (first frame only)
	n    int64
}

func (f frameInfo) String() string {
	s := fmt.Sprintf("op%d/%d", f.op, f.n)
	if f.fin {
		s += "/fin"
	}
	if f.rsv1 {
		s += "/rsv1"
	}
	return s
}

// connFrames are the frames of one connection: in = client to server.
type connFrames struct {
	mu      sync.Mutex
	in, out []frameInfo
	deflate bool   // the 101 response accepted permessage-deflate
	offer   string // Sec-WebSocket-Extensions of the request
	answer  string // Sec-WebSocket-Extensions of the response
	// answered is closed once the response head has been written (the
	// client may read it before the server's Write returns).
	answered chan struct{}
}

// extensions returns the Sec-WebSocket-Extensions of the request and the
// response, waiting up to 5 s for the response to be recorded.
func (cf *connFrames) extensions() (offer, answer string) {
	select {
	case <-cf.answered:
	case <-time.After(5 * time.Second):
	}
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.offer, cf.answer
}

// headerValues joins the values of header name in an HTTP head.
func headerValues(head []byte, name string) string {
	var vs []string
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return strings.Join(vs, ", ")
}

func (cf *connFrames) deflated() bool {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return cf.deflate
}

// dataFrames returns the data frames (text, binary, continuation) of a direction.
func (cf *connFrames) dataFrames(in bool) []frameInfo {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	src := cf.out
	if in {
		src = cf.in
	}
	var fs []frameInfo
	for _, f := range src {
		if f.op <= 2 {
			fs = append(fs, f)
		}
	}
	return fs
}

type wireStats struct {
	mu sync.Mutex
	m  map[string]*connFrames
}

// frames returns the frames of the connection of case name (nil if none).
func (w *wireStats) frames(name string) *connFrames {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[name]
}

func (w *wireStats) register(name string, cf *connFrames) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]*connFrames)
	}
	w.m[name] = cf
}

// newSniffServer starts an httptest server whose connections are parsed.
func newSniffServer(t *testing.T, h http.Handler) (*httptest.Server, *wireStats) {
	st := &wireStats{}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = &sniffListener{Listener: srv.Listener, st: st}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, st
}

type sniffListener struct {
	net.Listener
	st *wireStats
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &sniffConn{Conn: c, cf: &connFrames{answered: make(chan struct{})}}
	sc.in = frameParser{add: func(f frameInfo) { sc.cf.mu.Lock(); sc.cf.in = append(sc.cf.in, f); sc.cf.mu.Unlock() }}
	sc.out = frameParser{add: func(f frameInfo) { sc.cf.mu.Lock(); sc.cf.out = append(sc.cf.out, f); sc.cf.mu.Unlock() }}
	sc.in.onHead = func(head []byte) {
		// "GET /?mode=...&case=NAME HTTP/1.1"
		sc.cf.mu.Lock()
		sc.cf.offer = headerValues(head, "Sec-WebSocket-Extensions")
		sc.cf.mu.Unlock()
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		if f := strings.Fields(string(line)); len(f) == 3 {
			if u, err := url.ParseRequestURI(f[1]); err == nil {
				l.st.register(u.Query().Get("case"), sc.cf)
			}
		}
	}
	sc.out.onHead = func(head []byte) {
		answer := headerValues(head, "Sec-WebSocket-Extensions")
		sc.cf.mu.Lock()
		sc.cf.answer = answer
		sc.cf.deflate = strings.Contains(strings.ToLower(answer), "permessage-deflate")
		sc.cf.mu.Unlock()
		close(sc.cf.answered)
	}
	return sc, nil
}

type sniffConn struct {
	net.Conn
	cf      *connFrames
	rmu, wm sync.Mutex
	in, out frameParser
}

func (c *sniffConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n, err := c.Conn.Read(p)
	c.in.feed(p[:n])
	return n, err
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	n, err := c.Conn.Write(p)
	c.out.feed(p[:n])
	return n, err
}

// frameParser follows one direction of a connection: the HTTP head, then frames.
type frameParser struct {
	add     func(frameInfo)
	onHead  func([]byte)
	headEnd bool
	head    []byte
	hdr     []byte
	skip    int64
}

func (p *frameParser) feed(b []byte) {
	for len(b) > 0 {
		if !p.headEnd {
			i := 0
			for i < len(b) && !bytes.HasSuffix(p.head, []byte("\r\n\r\n")) {
				if len(p.head) < 16<<10 {
					p.head = append(p.head, b[i])
				}
				i++
			}
			b = b[i:]
			if bytes.HasSuffix(p.head, []byte("\r\n\r\n")) {
				p.headEnd = true
				if p.onHead != nil {
					p.onHead(p.head)
				}
			}
			continue
		}
		if p.skip > 0 {
			k := int64(len(b))
			if k > p.skip {
				k = p.skip
			}
			p.skip -= k
			b = b[k:]
			continue
		}
		p.hdr = append(p.hdr, b[0])
		b = b[1:]
		need := 2
		if len(p.hdr) >= 2 {
			switch p.hdr[1] & 0x7f {
			case 126:
				need += 2
			case 127:
				need += 8
			}
			if p.hdr[1]&0x80 != 0 {
				need += 4
			}
		}
		if len(p.hdr) < need {
			continue
		}
		n := int64(p.hdr[1] & 0x7f)
		switch n {
		case 126:
			n = int64(p.hdr[2])<<8 | int64(p.hdr[3])
		case 127:
			n = 0
			for _, x := range p.hdr[2:10] {
				n = n<<8 | int64(x)
			}
		}
		p.add(frameInfo{op: p.hdr[0] & 0x0f, fin: p.hdr[0]&0x80 != 0, rsv1: p.hdr[0]&0x40 != 0, n: n})
		p.skip = n
		p.hdr = p.hdr[:0]
	}
}

func describeFrames(fs []frameInfo) string {
	if len(fs) > 6 {
		return fmt.Sprintf("%d frames: %v ... %v", len(fs), fs[:3], fs[len(fs)-2:])
	}
	return fmt.Sprintf("%d frames: %v", len(fs), fs)
}

// checkWire checks the frames of a message case (comp "plain" or "deflate"):
//   - the peer's whole messages are one frame, its fragmented ones several,
//     and the fragmented messages of our side (1 MiB and more) several;
//   - without permessage-deflate negotiated no frame has RSV1 set and the
//     frames carry exactly the message; with it, only first frames may have
//     RSV1 (RFC 7692 §6.1), and the frame checks apply to uncompressed messages.
//
// peerToUsIsIn: the direction from the peer to our side is client to server.
func checkWire(t *testing.T, st *wireStats, name, comp, mode string, size int, peerToUsIsIn bool) {
	t.Helper()
	cf := st.frames(name)
	if cf == nil {
		t.Errorf("wire: no connection recorded for case %q", name)
		return
	}
	deflate := cf.deflated()
	fromPeer := cf.dataFrames(peerToUsIsIn)
	fromUs := cf.dataFrames(!peerToUsIsIn)
	offer, answer := cf.extensions()
	t.Logf("wire: extensions offered %q, accepted %q; peer sent %s; we sent %s", offer, answer, describeFrames(fromPeer), describeFrames(fromUs))
	if comp == "plain" && deflate {
		t.Errorf("wire: permessage-deflate negotiated although the peer did not offer/accept it")
	}
	compressed := func(fs []frameInfo, who string) bool {
		c := false
		for i, f := range fs {
			if !f.rsv1 {
				continue
			}
			switch {
			case !deflate:
				t.Errorf("wire: %s set RSV1 on frame %d (%v) without permessage-deflate negotiated", who, i, f)
			case f.op == 0:
				t.Errorf("wire: %s set RSV1 on a continuation frame (%d: %v): RFC 7692 §6.1 allows it on the first frame only", who, i, f)
			default:
				c = true
			}
		}
		return c
	}
	peerCompressed := compressed(fromPeer, "the peer")
	usCompressed := compressed(fromUs, "our side")
	switch mode {
	case "whole":
		if !peerCompressed && (len(fromPeer) != 1 || !fromPeer[0].fin || fromPeer[0].n != int64(size)) {
			t.Errorf("wire: the peer sent %s, want 1 final frame of %d bytes", describeFrames(fromPeer), size)
		}
	case "peer-frag":
		if !peerCompressed && size >= 3 && len(fromPeer) < 2 {
			t.Errorf("wire: the peer sent %s, want a fragmented message", describeFrames(fromPeer))
		}
	case "our-frag":
		if !usCompressed && size >= 1<<20 && len(fromUs) < 2 {
			t.Errorf("wire: our Writer sent %s for a %d B message written in chunks, want fragments",
				describeFrames(fromUs), size)
		}
	}
	if !peerCompressed {
		if total := sumFrames(fromPeer); total != int64(size) {
			t.Errorf("wire: the peer's frames carry %d bytes, want %d", total, size)
		}
	}
	if !usCompressed {
		if total := sumFrames(fromUs); total != int64(size) {
			t.Errorf("wire: our frames carry %d bytes, want %d", total, size)
		}
	}
}

func sumFrames(fs []frameInfo) int64 {
	var total int64
	for _, f := range fs {
		total += f.n
	}
	return total
}
