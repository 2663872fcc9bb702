package natsbroker

import (
	"context"

	"github.com/duplexws/duplex/hub"
)

var _ hub.ReadyChecker = (*Broker)(nil)

// Ready implements hub.ReadyChecker from what the broker already knows: it
// fails once the broker is closed and while its NATS connection is down
// (when Publish refuses with ErrNotConnected), so that a readiness probe
// takes the node out of rotation until NATS is back.
func (b *Broker) Ready(ctx context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errClosed
	}
	if !b.nc.IsConnected() {
		return ErrNotConnected
	}
	return nil
}
