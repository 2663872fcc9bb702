package websocket

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// maxCloseReason is what fits in a close frame beside the code.
const maxCloseReason = maxControlPayload - 2

var errCloseTimeout = errors.New("websocket: the peer did not answer the close frame in time")

// Close runs the closing handshake (RFC 6455 §7): it writes what is queued
// and a close frame with code and reason, waits up to CloseTimeout for the
// peer's close frame, and closes the connection. It is safe to call at any
// time, also while another goroutine reads or writes, and more than once.
//
// StatusNoStatusRcvd sends a close frame without a code. A reason longer
// than 123 bytes is cut at a character boundary. Codes that may not be sent
// (1004-1006, 1015, outside 1000-4999) close the connection without a
// handshake and return an error.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code != StatusNoStatusRcvd && !validWireCode(code) {
		c.CloseNow()
		return fmt.Errorf("websocket: close code %d may not be sent", int(code))
	}
	if c.inLoopCallback() {
		c.closeWithoutWaiting(code, reason) // events.go
		return nil
	}
	if err := c.writeClose(code, reason); err != nil {
		c.CloseNow()
		if c.peerClosed() {
			return nil
		}
		return err
	}
	err := c.waitPeerClose()
	c.CloseNow()
	return err
}

func (c *Conn) peerClosed() bool { return c.closeRcvd.fired() }

// waitPeerClose waits for the peer's close frame: read by a goroutine in
// Read, or, when none is reading, read here.
func (c *Conn) waitPeerClose() error {
	deadline := time.Now().Add(c.cfg.closeTimeout)
	timer := time.NewTimer(c.cfg.closeTimeout)
	defer timer.Stop()
	for {
		wake := c.readSem.tryLockOrWait()
		if wake == nil {
			break
		}
		select {
		case <-c.closeRcvd.done():
			return nil
		case <-c.closed.done():
			return nil // closed under us (CloseNow, a failed read): nothing to wait for
		case <-timer.C:
			return errCloseTimeout
		case <-wake:
		}
	}
	err := c.drainUntilClose(deadline)
	c.readSem.unlock()
	switch {
	case c.peerClosed():
		return nil
	case isTimeout(err):
		return errCloseTimeout
	}
	return err
}

func truncateReason(s string) string {
	if len(s) <= maxCloseReason {
		return s
	}
	s = s[:maxCloseReason]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
