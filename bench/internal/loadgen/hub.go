//go:build linux

package loadgen

import (
	"bytes"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/duplexws/duplex/bench/internal/hexstamp"
)

// subscribe sends a hub subscriber's connect and subscribe commands at once
// on a connection just opened (not the publisher's).
func (g *gen) subscribe(c *conn) {
	if g.subCmds == nil || c.idx == 0 {
		return
	}
	if n, err := unix.Write(c.fd, g.subCmds); err != nil || n != len(g.subCmds) {
		g.lose(c)
		return
	}
	c.subscribing, c.replies = true, 0
	g.subscribing++
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
