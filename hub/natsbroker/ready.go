package natsbroker

import (
	"context"
	"fmt"
	"time"

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

// CaughtUp returns nil once srv, the server this broker's node embeds, is
// current with its cluster (Server.Current) and its replicas of the
// broker's streams hold everything their leaders held when asked; else
// what it still lacks. A node restarted on its directory joins the cluster
// before its replicas have caught up with what was stored while it was
// away; until they have, the streams' quorum hangs on the other nodes, and
// stopping one of them would stop the streams (the rolling deploys of
// anycable#284). So a rolling restart moves to the next node only once
// this returns nil. The leader's last sequence is read first and the
// replica's after: a replica only grows, so one that reaches the leader's
// has everything acknowledged before the call. It waits for that within
// ctx (bounded by Options.Timeout when it has no deadline).
func (b *Broker) CaughtUp(ctx context.Context, srv *Server) error {
	if err := srv.Current(); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	for _, stream := range []string{b.stream, b.presStream} {
		info, err := b.leaderInfo(ctx, stream, "")
		if err != nil {
			return fmt.Errorf("natsbroker: stream %s: %w", stream, err)
		}
		if info.Config.Replicas <= 1 {
			continue // on one node: nothing to catch up
		}
		// A replica that keeps up still trails its leader by what is in
		// flight: wait, within ctx, for it to reach the leader's last
		// sequence as read, a fixed mark, rather than to equal a moving one.
		for {
			local, ok := srv.lastSeq(stream)
			if ok && local >= info.State.LastSeq {
				break
			}
			var err error
			if !ok {
				err = fmt.Errorf("natsbroker: stream %s: no replica on this node yet", stream)
			} else {
				err = fmt.Errorf("natsbroker: stream %s: this node's replica at %d, its leader's at %d", stream, local, info.State.LastSeq)
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
