//go:build !linux

package websocket

// Without the event loop (it needs epoll), AcceptEvents connections are
// served by a goroutine each, with the same callbacks (events.go).

type loopState struct{}

func startLoop(c *Conn) bool { return false }

func loopTransport(t transport) transport { return t }

func (loopState) remove() {}
