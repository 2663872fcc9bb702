package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// room is this hub's view of one room: its local subscribers and the
// position up to which it has delivered the broker's publications to them.
// It turns the broker's delivery into a chain without gaps: a publication
// whose Prev is not the last delivered offset means something was lost on
// the way, and the room fills the gap from history before it delivers more.
type room struct {
	h    *Hub
	name string

	// refs counts the subscriptions holding the room, including those
	// still starting; under h.mu.
	refs int

	ready chan struct{} // closed when the room has started, or failed to
	err   error         // why it failed; set before ready is closed

	// The broker's deliveries wait in inbox for the drain goroutine.
	inMu     sync.Mutex
	inbox    []Event
	spare    []Event // the drain's last batch, reused
	draining bool
	drainFn  func() // r.drain, made once

	mu   sync.Mutex
	bsub Subscription
	subs map[*subscription]struct{}
	// watchers are the subs that asked for presence events: join and
	// leave walk only them, so that a large room whose clients do not
	// watch presence pays nothing per join.
	watchers  map[*subscription]struct{}
	last      Position // of the last publication delivered to subs
	started   bool     // last is known
	repairing bool     // a goroutine is filling a gap; events wait in backlog
	retired   bool     // reset: out of Hub.rooms, delivering nothing (see resetLocked)
	backlog   []Event
	closed    bool
}

// subscriber is what a subscription delivers to: a WebSocket session, or
// a Server-Sent Events stream.
type subscriber interface {
	// deliver queues a live event (its encoded push, and the push framed
	// once for all WebSocket subscribers) without blocking. It returns
	// false when the subscriber takes no more: gone, or just overflowed
	// (it then closes itself as a slow consumer).
	// A fan-out passes starts, through which a WebSocket session that was
	// idle has its writing started along with others (writers.go).
	deliver(ev *Event, msg []byte, pm *websocket.PreparedMessage, starts *writerStarts) bool
	// overflow closes the subscriber as a slow consumer.
	overflow()
	// disconnect closes the subscriber with code once what is queued is
	// written.
	disconnect(code websocket.StatusCode, reason string)
}

// subscription is one client's subscription to one room.
type subscription struct {
	s        subscriber
	room     *room
	presence bool // push join and leave events

	// Under room.mu. While the subscription catches up (recovery or
	// recent history), live events wait in pending; gone is set when the
	// room dropped it (overflow, reset).
	catchingUp bool
	pending    []Event
	gone       bool
	// floor is the offset up to which the client already has the room's
	// publications (it recovered past what this hub had delivered).
	floor uint64
}

// maxBacklog bounds the events a room keeps while it starts or repairs; a
// room that falls further behind resets its subscribers instead.
const maxBacklog = 1 << 16

// acquire returns the named room, started, holding one reference.
func (h *Hub) acquire(ctx context.Context, name string) (*room, error) {
	h.mu.Lock()
	r := h.rooms[name]
	created := r == nil
	if created {
		r = &room{h: h, name: name, ready: make(chan struct{}), subs: make(map[*subscription]struct{}), watchers: make(map[*subscription]struct{})}
		r.drainFn = r.drain
		h.rooms[name] = r
	}
	r.refs++
	h.mu.Unlock()
	if created {
		r.start()
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
		h.release(r)
		return nil, ctx.Err()
	}
	if r.err != nil {
		h.release(r)
		return nil, r.err
	}
	return r, nil
}

// release drops one reference; the last one stops the broker subscription.
func (h *Hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	last := r.refs == 0
	if last && h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	h.mu.Unlock()
	if !last {
		return
	}
	r.mu.Lock()
	r.closed = true
	bsub := r.bsub
	r.backlog = nil
	r.mu.Unlock()
	if bsub != nil {
		bsub.Close()
	}
}

// start subscribes to the broker, then reads the room's position: events
// that arrive in between wait in the backlog and are sorted out by the
// chain check against that position.
func (r *room) start() {
	fail := func(err error) {
		r.h.mu.Lock()
		if r.h.rooms[r.name] == r {
			delete(r.h.rooms, r.name) // the next subscriber tries afresh
		}
		r.h.mu.Unlock()
		r.err = err
		close(r.ready)
	}
	ctx, cancel := context.WithTimeout(r.h.ctx, 10*time.Second)
	defer cancel()
	bsub, err := r.h.broker.Subscribe(ctx, r.name, r.deliver)
	if err != nil {
		fail(err)
		return
	}
	hist, err := r.h.broker.History(ctx, r.name, HistoryQuery{})
	if err != nil {
		bsub.Close()
		fail(err)
		return
	}
	r.mu.Lock()
	r.bsub = bsub
	r.last, r.started = hist.Latest, true
	backlog := r.backlog
	r.backlog = nil
	repair := r.applyAllLocked(backlog)
	r.mu.Unlock()
	close(r.ready)
	if repair {
		go r.repair()
	}
}

// deliver is the broker's delivery function: it must not block, and it
// does not fan out. It appends to the room's inbox, which a goroutine of
// the room drains while it has something, so that the broker's delivery
// path (its locks, its subscription's goroutine) is held only for an append,
// not for queueing a publication to every subscriber of a large room.
func (r *room) deliver(ev Event) {
	r.inMu.Lock()
	r.inbox = append(r.inbox, ev)
	start := !r.draining
	r.draining = true
	r.inMu.Unlock()
	if start {
		go r.drainFn()
	}
}

// drain applies the inbox in order until it is empty.
func (r *room) drain() {
	for {
		r.inMu.Lock()
		evs := r.inbox
		if len(evs) == 0 {
			r.draining = false
			r.inMu.Unlock()
			return
		}
		r.inbox = r.spare[:0]
		r.inMu.Unlock()

		r.mu.Lock()
		repair := false
		switch {
		case r.closed || r.retired:
		case !r.started || r.repairing:
			r.backlog = append(r.backlog, evs...)
			if len(r.backlog) > maxBacklog {
				r.resetLocked("fell too far behind the broker")
			}
		default:
			repair = r.applyAllLocked(evs)
		}
		r.mu.Unlock()
		if repair {
			go r.repair()
		}

		clear(evs)
		r.inMu.Lock()
		r.spare = evs[:0]
		r.inMu.Unlock()
	}
}

// applyAllLocked applies events in order; when one reveals a gap, it and
// the rest go to the backlog and applyAllLocked reports that a repair must
// run.
func (r *room) applyAllLocked(evs []Event) bool {
	for i, ev := range evs {
		if r.retired {
			return false // reset by an earlier event: it delivers nothing more
		}
		if r.applyLocked(ev) {
			r.backlog = append(r.backlog, evs[i+1:]...)
			return true
		}
	}
	return false
}

// applyLocked delivers one event to the subscribers. When a publication
// does not follow the last one delivered, it goes to the backlog, the room
// enters repair and applyLocked returns true.
func (r *room) applyLocked(ev Event) (repair bool) {
	switch ev.Kind {
	case EventPublication:
		p := &ev.Publication
		if p.Epoch != r.last.Epoch {
			// The room's history was reset under us: no subscriber's
			// position means anything any more.
			r.resetLocked("room history was reset")
			return false
		}
		if p.Offset <= r.last.Offset {
			return false // delivered already (from history, or twice by the broker)
		}
		if p.Prev != r.last.Offset {
			r.repairing = true
			r.backlog = append(r.backlog, ev)
			return true
		}
		r.last = p.Position
		r.fanOutLocked(ev, encodePub(p, true))
	case EventJoin, EventLeave:
		msg, _ := json.Marshal(presencePush{Push: presenceKind(ev.Kind), Room: r.name, Client: ev.Client})
		r.fanOutLocked(ev, msg)
	}
	return false
}

// fanOutLocked queues one event for every subscriber: framed once, as a
// prepared message shared by all of them.
func (r *room) fanOutLocked(ev Event, msg []byte) {
	presence := ev.Kind != EventPublication
	subs := r.subs
	if presence {
		subs = r.watchers
	}
	if len(subs) == 0 {
		return
	}
	pm := websocket.NewPreparedMessage(websocket.MessageText, msg)
	var starts writerStarts // the sessions this fan-out found idle (writers.go)
	for sub := range subs {
		if sub.catchingUp {
			if len(sub.pending) >= r.h.opts.QueueMessages {
				r.dropLocked(sub, CloseSlowConsumer, reasonSlowConsumer)
				continue
			}
			sub.pending = append(sub.pending, ev)
			continue
		}
		if !presence && sub.floor >= ev.Publication.Offset {
			continue
		}
		if !sub.s.deliver(&ev, msg, pm, &starts) {
			r.dropLocked(sub, 0, "") // the session closed itself
		}
	}
	starts.flush()
}

const (
	reasonSlowConsumer      = "slow consumer: reconnect and recover"
	reasonInsufficientState = "insufficient state: reconnect and recover"
)

// dropLocked removes sub from the room's deliveries and, with a code,
// closes its connection. The session still holds its reference and gives
// it back when its connection ends.
func (r *room) dropLocked(sub *subscription, code websocket.StatusCode, reason string) {
	r.removeLocked(sub)
	sub.pending = nil
	if code == CloseSlowConsumer {
		sub.s.overflow()
	} else if code != 0 {
		sub.s.disconnect(code, reason)
	}
}

// addLocked adds sub to the room's deliveries.
func (r *room) addLocked(sub *subscription) {
	r.subs[sub] = struct{}{}
	if sub.presence {
		r.watchers[sub] = struct{}{}
	}
}

// removeLocked takes sub out of the room's deliveries for good.
func (r *room) removeLocked(sub *subscription) {
	delete(r.subs, sub)
	delete(r.watchers, sub)
	sub.gone = true
}

// detach takes sub out of the room's deliveries.
func (r *room) detach(sub *subscription) {
	r.mu.Lock()
	r.removeLocked(sub)
	r.mu.Unlock()
}

// resetLocked closes every subscriber with CloseInsufficientState, so that
// each comes back and learns from its own position what it can recover, and
// retires the room: it leaves Hub.rooms and delivers nothing more, so that
// the next subscriber starts a fresh room from the broker's position. (A
// room that stayed would know only a position it can no longer vouch for,
// and would hand it to new subscribers.)
func (r *room) resetLocked(why string) {
	if len(r.subs) > 0 {
		r.h.resets.Add(1)
		r.h.log.Warn("hub: room reset, subscribers told to reconnect", "room", r.name, "why", why, "subscribers", len(r.subs))
	}
	for sub := range r.subs {
		r.dropLocked(sub, CloseInsufficientState, reasonInsufficientState)
	}
	r.retired = true
	r.backlog = nil
	r.h.mu.Lock() // h.mu is never held while a room's lock is taken: this order is safe
	if r.h.rooms[r.name] == r {
		delete(r.h.rooms, r.name)
	}
	r.h.mu.Unlock()
}

// repair fills the gap after r.last from history, then applies the
// backlog; it runs until the room is back on the live chain. A gap of more
// than MaxRecover publications, or one that history no longer holds, resets
// the room's subscribers instead (4010): they come back and recover from
// their own positions, or learn that they cannot.
func (r *room) repair() {
	r.h.repairs.Add(1)
	failures := 0
	for {
		r.mu.Lock()
		if r.closed || r.retired {
			r.mu.Unlock()
			return
		}
		from := r.last
		// The publication that revealed the gap is the first in the
		// backlog: its Prev is the offset the chain must reach. (A reset
		// may have emptied the backlog meanwhile: nothing to fill then.)
		i := slices.IndexFunc(r.backlog, func(ev Event) bool { return ev.Kind == EventPublication })
		if i < 0 {
			backlog := r.backlog
			r.backlog, r.repairing = nil, false
			again := r.applyAllLocked(backlog)
			r.mu.Unlock()
			if again {
				continue
			}
			return
		}
		target := r.backlog[i].Publication.Prev
		r.mu.Unlock()

		ctx, cancel := context.WithTimeout(r.h.ctx, 10*time.Second)
		hist, err := r.h.broker.History(ctx, r.name, HistoryQuery{Since: &from, Limit: r.h.opts.MaxRecover})
		cancel()

		r.mu.Lock()
		if r.closed || r.retired {
			r.mu.Unlock()
			return
		}
		switch {
		case err == nil:
			for _, p := range hist.Publications {
				if p.Epoch != r.last.Epoch || p.Prev != r.last.Offset {
					break // not a chain from r.last: the check below resets
				}
				r.last = p.Position
				r.fanOutLocked(Event{Kind: EventPublication, Publication: p}, encodePub(&p, true))
			}
			if r.last.Epoch != from.Epoch || r.last.Offset < target {
				r.resetLocked(fmt.Sprintf("a gap in live delivery after offset %d could not be filled from history", from.Offset))
			}
		case errors.Is(err, ErrUnrecoverable):
			r.resetLocked(fmt.Sprintf("history no longer holds the publications after offset %d", from.Offset))
		default:
			failures++
			if failures < 5 && r.h.ctx.Err() == nil {
				r.mu.Unlock()
				time.Sleep(time.Duration(failures) * 200 * time.Millisecond)
				continue
			}
			r.resetLocked("history unavailable: " + err.Error())
		}
		if r.retired {
			r.mu.Unlock()
			return
		}
		backlog := r.backlog
		r.backlog = nil
		r.repairing = false
		again := r.applyAllLocked(backlog)
		r.mu.Unlock()
		if !again {
			return
		}
	}
}

// catchUp merges what a subscription read from history (pubs, oldest
// first) with the live publications it buffered meanwhile, and returns them
// in order without duplicates and the position from which live delivery
// continues. keep limits the result to the newest keep, when positive.
// r.mu is held.
func (r *room) catchUpLocked(sub *subscription, pubs []Publication, keep int) ([]Publication, Position) {
	var out []Publication
	for _, p := range pubs {
		// Beyond r.last the broker has not delivered it here yet: it comes
		// live, so it must not come twice.
		if p.Epoch == r.last.Epoch && p.Offset <= r.last.Offset {
			out = append(out, p)
		}
	}
	var presence []Event
	for _, ev := range sub.pending {
		if ev.Kind == EventPublication {
			out = append(out, ev.Publication)
		} else {
			presence = append(presence, ev)
		}
	}
	slices.SortFunc(out, func(a, b Publication) int {
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	out = slices.CompactFunc(out, func(a, b Publication) bool { return a.Offset == b.Offset })
	if keep > 0 && len(out) > keep {
		out = out[len(out)-keep:]
	}
	sub.pending = presence
	return out, r.last
}

// errRoomRetired is attach's answer for a room that was reset after the
// subscriber acquired it: acquire again, and get the fresh room.
var errRoomRetired = errors.New("hub: room was reset")

// attachRequest says how a subscription starts: live only, or catching up
// from a position (since), with the latest publications (recent), with the
// presence list.
type attachRequest struct {
	since    *Position
	recent   int
	presence bool
}

// attachResult is what a subscriber is told before its live events.
type attachResult struct {
	position  Position      // live events come after it
	recovered *bool         // with since: whether pubs are all it missed
	pubs      []Publication // caught up, oldest first, up to position
	presence  []ClientInfo  // with presence
}

// attach adds sub to the room and, when req asks, catches it up: live
// events wait in sub.pending while history and presence are read outside
// the room's lock, then both are merged under it. emit runs under the
// room's lock, before any live event reaches sub, so that the subscriber
// can queue what it is told ahead of them. On error sub is not attached.
func (r *room) attach(ctx context.Context, sub *subscription, req attachRequest, emit func(attachResult)) error {
	if req.since == nil && req.recent <= 0 && !req.presence {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.retired {
			return errRoomRetired
		}
		r.addLocked(sub)
		emit(attachResult{position: r.last})
		return nil
	}
	r.mu.Lock()
	if r.retired {
		r.mu.Unlock()
		return errRoomRetired
	}
	sub.catchingUp = true
	r.addLocked(sub)
	r.mu.Unlock()
	detach := func() { r.detach(sub) }

	maxRecover := r.h.opts.MaxRecover
	var pubs []Publication
	var recovered *bool
	var histEpoch string
	keep := 0
	if req.since != nil {
		ok := false
		hist, err := r.h.broker.History(ctx, r.name, HistoryQuery{Since: req.since, Limit: maxRecover + 1})
		switch {
		case err == nil && len(hist.Publications) <= maxRecover:
			pubs, histEpoch, ok = hist.Publications, hist.Latest.Epoch, true
		case err == nil || errors.Is(err, ErrUnrecoverable):
			// Missed more than MaxRecover, or history cannot vouch: none.
		default:
			detach()
			return err
		}
		recovered = &ok
	}
	if (recovered == nil || !*recovered) && req.recent > 0 {
		keep = min(req.recent, maxRecover)
		hist, err := r.h.broker.History(ctx, r.name, HistoryQuery{Limit: keep, Reverse: true})
		if err != nil {
			detach()
			return err
		}
		pubs, histEpoch = hist.Publications, hist.Latest.Epoch
		slices.Reverse(pubs)
	}
	var present []ClientInfo
	if req.presence {
		// Read after sub was registered: join and leave events from now on
		// wait in sub.pending and follow, so that the list plus the events
		// is the room's presence.
		var err error
		if present, err = r.h.broker.Presence(ctx, r.name); err != nil {
			detach()
			return err
		}
		if present == nil {
			present = []ClientInfo{}
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if sub.gone {
		return nil // dropped while catching up: it is being closed
	}
	if histEpoch != "" && histEpoch != r.last.Epoch {
		// The room was reset between the read and now: what was read
		// belongs to an older history.
		pubs = nil
		if recovered != nil {
			no := false
			recovered = &no
		}
	}
	merged, pos := r.catchUpLocked(sub, pubs, keep)
	if recovered != nil && *recovered {
		// The subscriber has everything up to since. This hub may not have
		// delivered that far yet (another node served the client before):
		// what it buffered or will deliver up to since is not sent again.
		merged = afterOffset(merged, req.since.Offset)
		if req.since.Offset > pos.Offset {
			pos.Offset = req.since.Offset
			sub.floor = req.since.Offset
		}
	}
	emit(attachResult{position: pos, recovered: recovered, pubs: merged, presence: present})
	sub.catchingUp = false
	pending := sub.pending
	sub.pending = nil
	for i := range pending { // presence events that came meanwhile
		ev := &pending[i]
		msg, _ := json.Marshal(presencePush{Push: presenceKind(ev.Kind), Room: r.name, Client: ev.Client})
		if !sub.s.deliver(ev, msg, websocket.NewPreparedMessage(websocket.MessageText, msg), nil) {
			r.dropLocked(sub, 0, "")
			break
		}
	}
	return nil
}

func afterOffset(ps []Publication, off uint64) []Publication {
	i := 0
	for i < len(ps) && ps[i].Offset <= off {
		i++
	}
	return ps[i:]
}

func presenceKind(k EventKind) string {
	if k == EventLeave {
		return "leave"
	}
	return "join"
}
