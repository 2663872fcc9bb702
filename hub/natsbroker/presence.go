package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats.go/jetstream"
)

// Presence lives in a stream of its own, used as a key-value store with a
// TTL: one subject per present client, <prefix>.pr.<room>.<user>.<client>,
// and one per present user, <prefix>.pu.<room>.<user>, each keeping only its
// last message (MaxMsgsPerSubject 1) for PresenceTTL (MaxAge). A node
// refreshes the entries of its own clients every PresenceTTL/3, so a node
// that dies leaves its clients listed for at most PresenceTTL. A leave
// purges the client's subject, and the user's when none of the user's
// clients is left; a purge leaves no tombstone, so a room's counts are just
// how many messages match <prefix>.pr.<room>.> and <prefix>.pu.<room>.*, which
// one direct get of one message answers (its end-of-batch status says how
// many more match). That is what a JetStream key-value bucket would store,
// minus the delete markers that would have to be told from live entries.
//
// Join and leave events go to the room's subscribers as plain NATS messages
// on the room's event subjects, beside the republished publications.

type presKey struct{ room, client string }

func (b *Broker) presenceConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              b.presStream,
		Description:       "duplex hub presence: one subject per present client and per present user",
		Subjects:          []string{b.pre + "pr.>", b.pre + "pu.>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            b.opts.PresenceTTL,
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		Storage:           jetstream.MemoryStorage, // presence does not outlive its connections
		Replicas:          b.opts.PresenceReplicas,
		AllowDirect:       true,
	}
}

// ensurePresenceStream creates the presence stream or adopts it, as
// ensureStream does the rooms'.
func (b *Broker) ensurePresenceStream(ctx context.Context) error {
	want := b.presenceConfig()
	s, err := b.findOrCreate(ctx, want)
	if err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", b.presStream, err)
	}
	have := s.CachedInfo().Config
	if err := sameLayout(have, want, "PresenceReplicas"); err != nil {
		return err
	}
	if have.MaxAge != want.MaxAge || have.MaxMsgsPerSubject != 1 || !have.AllowDirect ||
		!slices.Equal(have.Subjects, want.Subjects) {
		if s, err = b.js.UpdateStream(ctx, want); err != nil {
			return fmt.Errorf("natsbroker: updating stream %s: %w", b.presStream, err)
		}
	}
	b.pres = s
	return nil
}

func (b *Broker) clientSubject(room string, c hub.ClientInfo) string {
	return b.pre + "pr." + token(room) + "." + userToken(c.User, c.Client) + "." + token(c.Client)
}

func (b *Broker) userSubject(room string, c hub.ClientInfo) string {
	return b.pre + "pu." + token(room) + "." + userToken(c.User, c.Client)
}

// putPresence stores (or refreshes) the client's and its user's entries.
func (b *Broker) putPresence(ctx context.Context, room string, c hub.ClientInfo) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	// Wait, as long as ctx allows, for a stream that has no leader yet to
	// take the message (in a cluster: just created, or electing one).
	popts := []jetstream.PublishOpt{jetstream.WithExpectStream(b.presStream),
		jetstream.WithRetryAttempts(untilDone), jetstream.WithRetryWait(50 * time.Millisecond)}
	if _, err := b.js.Publish(ctx, b.clientSubject(room, c), data, popts...); err != nil {
		return err
	}
	_, err = b.js.Publish(ctx, b.userSubject(room, c), nil, popts...)
	return err
}

// Join implements hub.Broker. A client already present (joined through
// this broker) gets its info refreshed, and no second join event.
func (b *Broker) Join(ctx context.Context, room string, c hub.ClientInfo) error {
	if room == "" || c.Client == "" {
		return errors.New("natsbroker: join needs a room and a client id")
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed
	}
	k := presKey{room, c.Client}
	_, again := b.present[k]
	b.present[k] = c
	b.mu.Unlock()
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.putPresence(ctx, room, c); err != nil {
		return fmt.Errorf("natsbroker: join %q: %w", room, err)
	}
	if again {
		return nil
	}
	return b.event(room, "join", c)
}

// event sends a join or leave event to the room's subscribers, wherever
// they are.
func (b *Broker) event(room, kind string, c hub.ClientInfo) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.nc.Publish(b.eventPrefix(token(room))+kind, data)
}

// Leave implements hub.Broker.
func (b *Broker) Leave(ctx context.Context, room string, c hub.ClientInfo) error {
	k := presKey{room, c.Client}
	b.hbMu.Lock()
	b.mu.Lock()
	old, ok := b.present[k]
	delete(b.present, k)
	b.mu.Unlock()
	b.hbMu.Unlock()
	if !ok {
		return nil
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.removePresence(ctx, k, old)
}

// removePresence purges a client's entry, its user's when it was the
// user's last client here or anywhere, and tells the room's subscribers.
// A join of the same user elsewhere racing with the check may lose the
// user entry until that node's next refresh (PresenceTTL/3).
func (b *Broker) removePresence(ctx context.Context, k presKey, c hub.ClientInfo) error {
	if err := b.pres.Purge(ctx, jetstream.WithPurgeSubject(b.clientSubject(k.room, c))); err != nil {
		return fmt.Errorf("natsbroker: leave %q: %w", k.room, err)
	}
	// Asked of the leader, which has applied the purge just acknowledged:
	// a replica that has not yet would still count this client.
	left, err := b.leaderCount(ctx, b.pre+"pr."+token(k.room)+"."+userToken(c.User, c.Client)+".*")
	if err == nil && left == 0 {
		err = b.pres.Purge(ctx, jetstream.WithPurgeSubject(b.userSubject(k.room, c)))
	}
	if err != nil {
		return fmt.Errorf("natsbroker: leave %q: %w", k.room, err)
	}
	return b.event(k.room, "leave", c)
}

// leaderCount counts the entries matching filter on the presence stream's
// leader.
func (b *Broker) leaderCount(ctx context.Context, filter string) (int, error) {
	info, err := b.leaderInfo(ctx, b.presStream, filter)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// countPresence counts the entries matching filter: one direct get of the
// first, whose end-of-batch status carries how many more match.
func (b *Broker) countPresence(ctx context.Context, filter string) (int, error) {
	n, pending, err := b.directBatch(ctx, b.presStream, directReq{NextFor: filter, Batch: 1}, func(*storedMsg) {})
	if errors.Is(err, errNoMessage) {
		return 0, nil
	}
	return n + int(pending), err
}

// Presence implements hub.Broker: the room's entries, read in batches.
func (b *Broker) Presence(ctx context.Context, room string) ([]hub.ClientInfo, error) {
	if b.isClosed() {
		return nil, errClosed
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	filter := b.pre + "pr." + token(room) + ".>"
	var out []hub.ClientInfo
	from := uint64(0)
	for {
		var last uint64
		n, pending, err := b.directBatch(ctx, b.presStream, directReq{Seq: from, NextFor: filter, Batch: 1024}, func(m *storedMsg) {
			last = m.seq
			var c hub.ClientInfo
			if json.Unmarshal(m.data, &c) == nil {
				out = append(out, c)
			}
		})
		if errors.Is(err, errNoMessage) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if pending == 0 || n == 0 {
			return out, nil
		}
		from = last + 1
	}
}

// PresenceStats implements hub.Broker with two small requests, whatever the
// room's size.
func (b *Broker) PresenceStats(ctx context.Context, room string) (hub.PresenceStats, error) {
	if b.isClosed() {
		return hub.PresenceStats{}, errClosed
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	clients, err := b.countPresence(ctx, b.pre+"pr."+token(room)+".>")
	if err != nil {
		return hub.PresenceStats{}, err
	}
	users, err := b.countPresence(ctx, b.pre+"pu."+token(room)+".*")
	if err != nil {
		return hub.PresenceStats{}, err
	}
	return hub.PresenceStats{Clients: clients, Users: users}, nil
}

// heartbeat refreshes this node's presence entries every PresenceTTL/3.
func (b *Broker) heartbeat() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.mu.Lock()
		keys := make([]presKey, 0, len(b.present))
		for k := range b.present {
			keys = append(keys, k)
		}
		b.mu.Unlock()
		for _, k := range keys {
			b.refresh(k)
		}
	}
}

// refresh stores one entry again, unless it left meanwhile. A Leave waits
// for a refresh of the same entry under way (hbMu), so that its purge
// comes after the refresh is stored, never before it.
func (b *Broker) refresh(k presKey) {
	b.hbMu.Lock()
	defer b.hbMu.Unlock()
	b.mu.Lock()
	c, ok := b.present[k]
	b.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	b.putPresence(ctx, k.room, c)
}
