package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// Defaults of MemoryOptions.
const (
	DefaultHistorySize       = 1000
	DefaultHistoryTTL        = 24 * time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
)

// MemoryOptions configure NewMemoryBroker. The zero value gives the
// defaults.
type MemoryOptions struct {
	// HistorySize is the most publications a room keeps; 0 means
	// DefaultHistorySize. Older ones are dropped as new ones come.
	HistorySize int
	// HistoryTTL is how long a publication stays in its room's history; 0
	// means DefaultHistoryTTL.
	HistoryTTL time.Duration
	// IdempotencyWindow is how long a publish key is remembered; 0 means
	// DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
}

// NewMemoryBroker returns a Broker for the rooms of one process. Offsets are
// contiguous per room, starting at 1; a room's epoch is drawn at random when
// the room is first used, and a room that has been idle (no subscriber, no
// presence, no history, no publish key) for HistoryTTL is forgotten, so that
// it comes back with a new epoch.
func NewMemoryBroker(opts MemoryOptions) *MemoryBroker {
	if opts.HistorySize <= 0 {
		opts.HistorySize = DefaultHistorySize
	}
	if opts.HistoryTTL <= 0 {
		opts.HistoryTTL = DefaultHistoryTTL
	}
	if opts.IdempotencyWindow <= 0 {
		opts.IdempotencyWindow = DefaultIdempotencyWindow
	}
	return &MemoryBroker{opts: opts, rooms: make(map[string]*memRoom), now: time.Now}
}

// MemoryBroker is the Broker of one process; see NewMemoryBroker.
type MemoryBroker struct {
	opts   MemoryOptions
	now    func() time.Time // replaced by tests that move time
	mu     sync.Mutex
	rooms  map[string]*memRoom
	closed bool
	sweeps int // publishes since the last sweep of idle rooms
}

type memRoom struct {
	mu       sync.Mutex
	epoch    string
	last     uint64        // offset of the newest publication, 0 for none
	log      []Publication // oldest first; log[i].Offset == log[0].Offset+i
	subs     map[*memSub]struct{}
	present  map[string]ClientInfo // by client id
	users    map[string]int        // clients present per user
	keys     map[string]keyedPosition
	keyOrder []string // keys in the order they were stored, for expiry
	touched  time.Time
}

type keyedPosition struct {
	pos Position
	at  time.Time
}

type memSub struct {
	b       *MemoryBroker
	name    string
	room    *memRoom
	deliver func(Event)
	once    sync.Once
}

var errBrokerClosed = errors.New("hub: broker closed")

// room returns the named room, creating it with a fresh epoch.
func (b *MemoryBroker) room(name string) (*memRoom, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errBrokerClosed
	}
	r := b.rooms[name]
	if r == nil {
		r = &memRoom{
			epoch:   newEpoch(),
			subs:    make(map[*memSub]struct{}),
			present: make(map[string]ClientInfo),
			users:   make(map[string]int),
			keys:    make(map[string]keyedPosition),
			touched: b.now(),
		}
		b.rooms[name] = r
	}
	return r, nil
}

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// trim drops the publications and keys that have aged out. r.mu is held.
func (b *MemoryBroker) trim(r *memRoom, now time.Time) {
	if n := len(r.log) - b.opts.HistorySize; n > 0 {
		clear(r.log[:n])
		r.log = r.log[n:]
	}
	cut := 0
	for cut < len(r.log) && now.Sub(r.log[cut].Time) > b.opts.HistoryTTL {
		cut++
	}
	if cut > 0 {
		clear(r.log[:cut])
		r.log = r.log[cut:]
	}
	if len(r.log) == 0 {
		r.log = nil // let the backing array go
	}
	cut = 0
	for cut < len(r.keyOrder) {
		k := r.keyOrder[cut]
		if kp, ok := r.keys[k]; ok && now.Sub(kp.at) <= b.opts.IdempotencyWindow {
			break
		}
		delete(r.keys, k)
		cut++
	}
	r.keyOrder = r.keyOrder[cut:]
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(ctx context.Context, name string, m Message) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	r, err := b.room(name)
	if err != nil {
		return Position{}, err
	}
	now := b.now()
	r.mu.Lock()
	b.trim(r, now)
	r.touched = now
	if m.Key != "" {
		if kp, ok := r.keys[m.Key]; ok {
			r.mu.Unlock()
			return kp.pos, nil
		}
	}
	p := Publication{
		Room:     name,
		Position: Position{Offset: r.last + 1, Epoch: r.epoch},
		Prev:     r.last,
		Time:     now,
		From:     m.From,
		Data:     m.Data,
	}
	r.last = p.Offset
	r.log = append(r.log, p)
	b.trim(r, now)
	if m.Key != "" {
		r.keys[m.Key] = keyedPosition{pos: p.Position, at: now}
		r.keyOrder = append(r.keyOrder, m.Key)
	}
	// Delivered under the room's lock, so that every subscriber sees the
	// log's order.
	ev := Event{Kind: EventPublication, Publication: p}
	for s := range r.subs {
		s.deliver(ev)
	}
	r.mu.Unlock()
	b.maybeSweep(now)
	return p.Position, nil
}

// maybeSweep forgets idle rooms every so many publishes, so that a process
// that uses many short-lived rooms does not keep them all.
func (b *MemoryBroker) maybeSweep(now time.Time) {
	b.mu.Lock()
	b.sweeps++
	if b.sweeps < 1024 {
		b.mu.Unlock()
		return
	}
	b.sweeps = 0
	var idle []string
	for name, r := range b.rooms {
		if !r.mu.TryLock() {
			continue
		}
		b.trim(r, now)
		if len(r.log) == 0 && len(r.subs) == 0 && len(r.present) == 0 && len(r.keys) == 0 &&
			now.Sub(r.touched) > b.opts.HistoryTTL {
			idle = append(idle, name)
		}
		r.mu.Unlock()
	}
	for _, name := range idle {
		delete(b.rooms, name)
	}
	b.mu.Unlock()
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(ctx context.Context, name string, deliver func(Event)) (Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := b.room(name)
	if err != nil {
		return nil, err
	}
	s := &memSub{b: b, name: name, room: r, deliver: deliver}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.touched = b.now()
	r.mu.Unlock()
	return s, nil
}

func (s *memSub) Close() error {
	s.once.Do(func() {
		s.room.mu.Lock()
		delete(s.room.subs, s)
		s.room.touched = s.b.now()
		s.room.mu.Unlock()
	})
	return nil
}

// History implements Broker.
func (b *MemoryBroker) History(ctx context.Context, name string, q HistoryQuery) (History, error) {
	if err := ctx.Err(); err != nil {
		return History{}, err
	}
	r, err := b.room(name)
	if err != nil {
		return History{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.trim(r, b.now())
	h := History{Latest: Position{Offset: r.last, Epoch: r.epoch}}
	// from is the index in r.log of the first publication selected.
	from := 0
	if q.Since != nil {
		s := *q.Since
		if s.Epoch != r.epoch || s.Offset > r.last {
			return History{}, ErrUnrecoverable
		}
		if s.Offset < r.last {
			// The log must still hold the publication right after Since.
			if len(r.log) == 0 || r.log[0].Offset > s.Offset+1 {
				return History{}, ErrUnrecoverable
			}
			from = int(s.Offset + 1 - r.log[0].Offset)
		} else {
			from = len(r.log)
		}
	}
	sel := r.log[from:]
	if q.Limit <= 0 {
		return h, nil
	}
	if len(sel) > q.Limit {
		if q.Reverse {
			sel = sel[len(sel)-q.Limit:]
		} else {
			sel = sel[:q.Limit]
		}
	}
	h.Publications = make([]Publication, len(sel))
	if q.Reverse {
		for i, p := range sel {
			h.Publications[len(sel)-1-i] = p
		}
	} else {
		copy(h.Publications, sel)
	}
	return h, nil
}

// Join implements Broker.
func (b *MemoryBroker) Join(ctx context.Context, name string, c ClientInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := b.room(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.present[c.Client]; ok {
		r.present[c.Client] = c // refreshed info, not a second join
		return nil
	}
	r.present[c.Client] = c
	r.users[userKey(c)]++
	r.touched = b.now()
	ev := Event{Kind: EventJoin, Client: c}
	for s := range r.subs {
		s.deliver(ev)
	}
	return nil
}

// userKey is what PresenceStats.Users counts distinct: the user id, or for
// an anonymous client (no user) the client itself.
func userKey(c ClientInfo) string {
	if c.User == "" {
		return "\x00" + c.Client
	}
	return c.User
}

// Leave implements Broker.
func (b *MemoryBroker) Leave(ctx context.Context, name string, c ClientInfo) error {
	r, err := b.room(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.present[c.Client]
	if !ok {
		return nil
	}
	delete(r.present, c.Client)
	if k := userKey(old); r.users[k] <= 1 {
		delete(r.users, k)
	} else {
		r.users[k]--
	}
	r.touched = b.now()
	ev := Event{Kind: EventLeave, Client: old}
	for s := range r.subs {
		s.deliver(ev)
	}
	return nil
}

// Presence implements Broker.
func (b *MemoryBroker) Presence(ctx context.Context, name string) ([]ClientInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := b.room(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ClientInfo, 0, len(r.present))
	for _, c := range r.present {
		out = append(out, c)
	}
	return out, nil
}

// PresenceStats implements Broker.
func (b *MemoryBroker) PresenceStats(ctx context.Context, name string) (PresenceStats, error) {
	if err := ctx.Err(); err != nil {
		return PresenceStats{}, err
	}
	r, err := b.room(name)
	if err != nil {
		return PresenceStats{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return PresenceStats{Clients: len(r.present), Users: len(r.users)}, nil
}

// Reset forgets a room's history and gives it a new epoch, as a broker that
// lost its storage would: subscribers that come back with an older position
// are told that it cannot be recovered. Offsets start again at 1.
func (b *MemoryBroker) Reset(name string) {
	r, err := b.room(name)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.epoch = newEpoch()
	r.last = 0
	r.log = nil
	clear(r.keys)
	r.keyOrder = nil
	r.mu.Unlock()
}

// Ready implements ReadyChecker: the broker is usable until it is closed.
func (b *MemoryBroker) Ready(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errBrokerClosed
	}
	return nil
}

// Close implements Broker: later calls fail, and deliveries stop.
func (b *MemoryBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, r := range b.rooms {
		r.mu.Lock()
		clear(r.subs)
		r.mu.Unlock()
	}
	return nil
}
