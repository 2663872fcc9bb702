package natsbroker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure New. The zero value gives the defaults.
type Options struct {
	// Stream names the JetStream stream of the rooms; "" gives "DUPLEX".
	// Presence lives in a second stream named Stream+"_PRESENCE".
	Stream string
	// Prefix starts every subject the broker uses; "" gives "duplex".
	// Several hubs on one NATS system keep apart by Stream and Prefix.
	Prefix string
	// Replicas of the rooms' stream: 1, or 3 in a cluster of 3 nodes or
	// more, where it survives the loss of one node; 0 means 1. JetStream
	// places a stream on as many nodes as its replicas, so a cluster needs
	// at least that many. Every node must ask for the same: New refuses a
	// stream that has other replicas than it asks for.
	Replicas int
	// PresenceReplicas of the presence stream; 0 means Replicas. With 1,
	// the presence of a whole cluster is lost with the node that holds it
	// (and rebuilt by the next refreshes, PresenceTTL/3).
	PresenceReplicas int
	// Memory keeps the history in memory instead of files: for tests.
	Memory bool

	// HistorySize is the most publications a room keeps (the stream's
	// MaxMsgsPerSubject); 0 means hub.DefaultHistorySize.
	HistorySize int
	// HistoryTTL is how long a publication is kept (the stream's MaxAge);
	// 0 means hub.DefaultHistoryTTL.
	HistoryTTL time.Duration
	// IdempotencyWindow is how long a publish key is remembered (the
	// stream's duplicate window, at most HistoryTTL); 0 means
	// hub.DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration

	// PresenceTTL is how long a presence entry lives unless its node
	// refreshes it; nodes refresh theirs every PresenceTTL/3. A node that
	// dies leaves its clients listed for at most PresenceTTL. 0 means 60s.
	PresenceTTL time.Duration

	// Timeout bounds each JetStream request when the caller's context has
	// no deadline; 0 means 5s.
	Timeout time.Duration
}

// Header names the broker stores with a publication.
const (
	hdrFrom  = "Duplex-From"  // the publisher's hub.ClientInfo, JSON
	hdrPurge = "Duplex-Purge" // on a purge marker, which is no publication
)

// metaIncarnation is the stream metadata key holding the random id the
// broker drew when it created the stream.
const metaIncarnation = "duplex.incarnation"

// Broker is a hub.Broker on NATS JetStream; see the package doc.
type Broker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options

	stream, presStream string
	pre                string // Prefix + "."

	incMu sync.Mutex
	inc   incarnation

	pres jetstream.Stream // the presence stream
	hbMu sync.Mutex       // orders a presence refresh before a leave's purge

	mu      sync.Mutex
	rooms   map[string]*liveRoom
	present map[presKey]hub.ClientInfo // joined through this broker
	closed  bool

	status chan nats.Status
	stop   chan struct{}
	wg     sync.WaitGroup

	// fallbacks counts the history reads that a lagging replica sent, in
	// part or whole, to the stream's leader.
	fallbacks atomic.Uint64
}

// incarnation is one life of the rooms' stream: it ends when the stream is
// deleted (and maybe created again).
type incarnation struct {
	id      string // from the stream's metadata; also in the RePublish subjects
	created time.Time
	epoch   string
}

var errClosed = errors.New("natsbroker: broker closed")

// ErrNotConnected is returned by Publish while the broker's NATS
// connection is down: nothing was published; retry (with the same key) once
// it is back.
var ErrNotConnected = errors.New("natsbroker: not connected to NATS, nothing published: retry later")

// New returns a Broker on the NATS connection nc, creating its streams if
// they do not exist (or updating their limits to opts). nc stays the
// caller's: Close does not close it.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Broker, error) {
	if opts.Stream == "" {
		opts.Stream = "DUPLEX"
	}
	if opts.Prefix == "" {
		opts.Prefix = "duplex"
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.PresenceReplicas <= 0 {
		opts.PresenceReplicas = opts.Replicas
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = hub.DefaultHistorySize
	}
	if opts.HistoryTTL <= 0 {
		opts.HistoryTTL = hub.DefaultHistoryTTL
	}
	if opts.IdempotencyWindow <= 0 {
		opts.IdempotencyWindow = hub.DefaultIdempotencyWindow
	}
	opts.IdempotencyWindow = min(opts.IdempotencyWindow, opts.HistoryTTL)
	if opts.PresenceTTL <= 0 {
		opts.PresenceTTL = 60 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(opts.Timeout))
	if err != nil {
		return nil, err
	}
	b := &Broker{
		nc: nc, js: js, opts: opts,
		stream: opts.Stream, presStream: opts.Stream + "_PRESENCE",
		pre:     opts.Prefix + ".",
		rooms:   make(map[string]*liveRoom),
		present: make(map[presKey]hub.ClientInfo),
		stop:    make(chan struct{}),
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.ensureStream(ctx); err != nil {
		return nil, err
	}
	if err := b.ensurePresenceStream(ctx); err != nil {
		return nil, err
	}
	b.status = nc.StatusChanged(nats.CONNECTED)
	b.wg.Add(2)
	go b.watchConnection()
	go b.heartbeat()
	return b, nil
}

// bound gives ctx the broker's Timeout when it has no deadline.
func (b *Broker) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.opts.Timeout)
}

// Subjects. A room is one token: its name through token().
func (b *Broker) roomSubject(tok string) string { return b.pre + "r." + tok }
func (b *Broker) eventPrefix(tok string) string { return b.pre + "ev." + tok + "." }

func (b *Broker) streamConfig(id string) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.opts.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:              b.stream,
		Description:       "duplex hub rooms: one subject per room, the stream sequence is the offset",
		Subjects:          []string{b.pre + "r.*"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            b.opts.HistoryTTL,
		MaxMsgsPerSubject: int64(b.opts.HistorySize),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		Duplicates:        b.opts.IdempotencyWindow,
		Storage:           storage,
		Replicas:          b.opts.Replicas,
		AllowDirect:       true,
		// Nothing but the limits (a prefix of the stream by age, a prefix of
		// a room by count) and the broker's own Purge removes a room's
		// publications: the recovery rule depends on it.
		DenyDelete: true,
		RePublish: &jetstream.RePublish{
			Source:      b.pre + "r.*",
			Destination: b.pre + "ev.{{wildcard(1)}}.p." + id,
		},
		Metadata: map[string]string{metaIncarnation: id},
	}
}

// ensureStream creates the rooms' stream, or adopts the one there and
// brings its limits to the options, keeping its incarnation. Nodes may call
// it at once: JetStream's meta leader creates the stream once and answers
// the others "name in use" (their configurations differ, by the random
// incarnation id at least); they adopt the stream made. Replicas and
// storage are not changed on a stream that exists: a node that asks for
// others is refused, so that nodes started with different settings do not
// take turns rewriting the stream.
func (b *Broker) ensureStream(ctx context.Context) error {
	s, err := b.findOrCreate(ctx, b.streamConfig(newID()))
	if err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", b.stream, err)
	}
	info := s.CachedInfo()
	id := info.Config.Metadata[metaIncarnation]
	if id == "" {
		return fmt.Errorf("natsbroker: stream %s exists but was not made by this broker (no %s metadata)", b.stream, metaIncarnation)
	}
	want := b.streamConfig(id)
	if err := sameLayout(info.Config, want, "Replicas"); err != nil {
		return err
	}
	if !sameConfig(info.Config, want) {
		want.Metadata = info.Config.Metadata
		if s, err = b.js.UpdateStream(ctx, want); err != nil {
			return fmt.Errorf("natsbroker: updating stream %s: %w", b.stream, err)
		}
		info = s.CachedInfo()
	}
	b.setIncarnation(info)
	return nil
}

// findOrCreate finds the stream cfg names, or creates it with cfg. While
// a cluster is forming, or another node's creation of the same stream is
// under way, JetStream may answer that it is not available, or that the
// name is in use and then that the stream is not there yet, or not answer
// at all (a stream whose first leader is being elected: nats-server
// 2.15.2, jetstream_api.go:2100-2134, answers its info only from a leader,
// or a preferred member): it asks again, each time for at most a second,
// until ctx ends.
func (b *Broker) findOrCreate(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := b.js.Stream(actx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = b.js.CreateStream(actx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				s, err = b.js.Stream(actx, cfg.Name) // another node was first
			}
		}
		cancel()
		if err == nil {
			return s, nil
		}
		if !transient(err) && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// transient says whether a JetStream error may go away by itself soon: the
// cluster electing a leader, a stream just created elsewhere, peers not
// yet known to be online while the cluster forms (which, if the cluster
// has fewer nodes than the replicas asked, lasts: New fails with it when
// its context ends).
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNotFound, codeClusterUnavailable, codeNoPeers:
			return true
		}
	}
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, errNoLeader)
}

// sameLayout reports a stream whose replicas or storage differ from what
// this node asks for: nothing changes them behind an operator's back.
func sameLayout(have, want jetstream.StreamConfig, option string) error {
	if have.Replicas != want.Replicas {
		return fmt.Errorf("natsbroker: stream %s has %d replicas, this node asks for %d (Options.%s): "+
			"start every node with the same replicas, or change the stream's first (nats stream edit %s --replicas %d)",
			have.Name, have.Replicas, want.Replicas, option, have.Name, want.Replicas)
	}
	if have.Storage != want.Storage {
		return fmt.Errorf("natsbroker: stream %s keeps its messages in %s, this node asks for %s (Options.Memory)",
			have.Name, have.Storage, want.Storage)
	}
	return nil
}

func sameConfig(have, want jetstream.StreamConfig) bool {
	return have.MaxAge == want.MaxAge && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject &&
		have.Duplicates == want.Duplicates && have.Replicas == want.Replicas &&
		have.AllowDirect && have.DenyDelete && have.RePublish != nil &&
		have.RePublish.Source == want.RePublish.Source && have.RePublish.Destination == want.RePublish.Destination &&
		len(have.Subjects) == 1 && have.Subjects[0] == want.Subjects[0]
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// epochOf names an incarnation of the stream: its random id and its
// creation time, which nats-server keeps across restarts and sets anew when
// the stream is created again (it uses the same time to tell a recreated
// source stream: stream.go, identity()). A stream deleted and created again
// from a copy of its configuration keeps the id but not the time.
func epochOf(name, id string, created time.Time) string {
	h := sha256.Sum256([]byte(name + "\x00" + id + "\x00" + created.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:8])
}

func (b *Broker) setIncarnation(info *jetstream.StreamInfo) incarnation {
	id := info.Config.Metadata[metaIncarnation]
	inc := incarnation{id: id, created: info.Created, epoch: epochOf(info.Config.Name, id, info.Created)}
	b.incMu.Lock()
	b.inc = inc
	b.incMu.Unlock()
	return inc
}

func (b *Broker) incarnation() incarnation {
	b.incMu.Lock()
	defer b.incMu.Unlock()
	return b.inc
}

// streamInfo reads the stream's state from its leader and refreshes the
// incarnation.
func (b *Broker) streamInfo(ctx context.Context) (*jetstream.StreamInfo, incarnation, error) {
	return b.streamInfoOf(ctx, "")
}

// streamInfoOf is streamInfo with State.Subjects counting the messages of
// the subjects that match filter.
func (b *Broker) streamInfoOf(ctx context.Context, filter string) (*jetstream.StreamInfo, incarnation, error) {
	info, err := b.leaderInfo(ctx, b.stream, filter)
	if err != nil {
		return nil, incarnation{}, err
	}
	return info, b.setIncarnation(info), nil
}

// Publish implements hub.Broker. The offset is the stream sequence of the
// stored message; with m.Key the message carries a Nats-Msg-Id scoped to
// the room, and a second publish within the stream's duplicate window
// stores nothing and gets the first one's sequence.
func (b *Broker) Publish(ctx context.Context, room string, m hub.Message) (hub.Position, error) {
	if room == "" {
		return hub.Position{}, errors.New("natsbroker: empty room name")
	}
	if b.isClosed() {
		return hub.Position{}, errClosed
	}
	if !b.nc.IsConnected() {
		// Refuse now rather than let the client library buffer the
		// publish until it reconnects, after the caller gave up on it.
		return hub.Position{}, ErrNotConnected
	}
	msg := nats.NewMsg(b.roomSubject(token(room)))
	msg.Data = m.Data
	if m.From != nil {
		from, err := json.Marshal(m.From) // compact: one header line
		if err != nil {
			return hub.Position{}, err
		}
		msg.Header.Set(hdrFrom, string(from))
	}
	popts := []jetstream.PublishOpt{jetstream.WithExpectStream(b.stream)}
	if m.Key != "" {
		popts = append(popts, jetstream.WithMsgID(msgID(room, m.Key)))
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	keyed := m.Key != ""
	ack, err := b.publishMsg(ctx, msg, keyed, popts)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// Nothing took the message, for half a second (the client's
		// retries): the stream is gone (deleted by an operator), or, in a
		// cluster, it is electing a leader. Make it again if it is gone,
		// in a new epoch, and publish there, waiting for a leader for as
		// long as ctx allows.
		if err = b.ensureStream(ctx); err == nil {
			popts = append(popts, jetstream.WithRetryAttempts(untilDone), jetstream.WithRetryWait(50*time.Millisecond))
			ack, err = b.publishMsg(ctx, msg, keyed, popts)
		}
	}
	if err != nil {
		return hub.Position{}, fmt.Errorf("natsbroker: publish to %q: %w", room, err)
	}
	return hub.Position{Offset: ack.Sequence, Epoch: b.incarnation().epoch}, nil
}

// publishAttempt bounds one attempt of a keyed publish; see publishMsg.
const publishAttempt = time.Second

// publishMsg publishes msg to the stream. A keyed message (it carries a
// Nats-Msg-Id) whose attempt goes unanswered for publishAttempt is sent
// again, until ctx ends (and so is one told that its key is "in process":
// an earlier attempt is being stored, JSStreamDuplicateMessageConflict,
// jetstream_batching.go:621): in a cluster a publish that reaches a leader as
// it steps down (a node handing over before it stops, an election) is
// dropped without an answer, and would otherwise hold the caller for all
// of ctx; the stream stores the message at most once whatever the number
// of attempts, and answers a repeat with the first one's sequence. A
// message without a key is sent once: a second attempt could store it
// twice.
func (b *Broker) publishMsg(ctx context.Context, msg *nats.Msg, keyed bool, popts []jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if !keyed {
		return b.js.PublishMsg(ctx, msg, popts...)
	}
	for {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := b.js.PublishMsg(actx, msg, popts...)
		cancel()
		var apiErr *jetstream.APIError
		switch {
		case err == nil || ctx.Err() != nil:
			return ack, err
		case errors.As(err, &apiErr) && apiErr.ErrorCode == codeMsgIDInProcess:
			// The first attempt is on its way to being stored: the next
			// one gets its sequence.
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(20 * time.Millisecond):
			}
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		default:
			return ack, err
		}
	}
}

// msgID scopes an idempotency key to its room and keeps the header safe
// whatever bytes the key holds.
func msgID(room, key string) string {
	h := sha256.Sum256([]byte(room + "\x00" + key))
	return "duplex-" + hex.EncodeToString(h[:16])
}

// Purge forgets a room's history. It appends a purge marker to the room
// and removes everything before it: a position from before the marker is
// unrecoverable from then on (History refuses any Since with a marker after
// it), while the room's epoch, shared by all rooms of the stream, stays.
// Subscribers on a hub learn of it from the next publication's broken
// chain.
func (b *Broker) Purge(ctx context.Context, room string) error {
	if room == "" {
		return errors.New("natsbroker: empty room name")
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	subj := b.roomSubject(token(room))
	msg := nats.NewMsg(subj)
	msg.Header.Set(hdrPurge, "1")
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(b.stream))
	if err != nil {
		return fmt.Errorf("natsbroker: purge %q: %w", room, err)
	}
	s, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return err
	}
	// A purge by subject up to a sequence removes a prefix of the room:
	// the same shape as the limits, so the recovery rule holds.
	return s.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(ack.Sequence))
}

// liveRoom is a room with subscribers on this broker: one NATS
// subscription on the room's event subjects (publications republished by
// the stream, join and leave), delivering in order to every subscriber.
type liveRoom struct {
	b    *Broker
	name string
	tok  string
	nsub *nats.Subscription

	mu    sync.Mutex // held while delivering: one event at a time, in order
	subs  map[*subscription]struct{}
	epoch string // of the last publication delivered
	last  uint64 // its offset: a publication at or below it is not delivered again
}

type subscription struct {
	lr      *liveRoom
	deliver func(hub.Event)
	once    sync.Once
}

// Subscribe implements hub.Broker. The first subscriber of a room on this
// broker subscribes to the room's event subjects; the last one to leave
// ends that subscription, so a node receives only its rooms' messages.
func (b *Broker) Subscribe(ctx context.Context, room string, deliver func(hub.Event)) (hub.Subscription, error) {
	if room == "" {
		return nil, errors.New("natsbroker: empty room name")
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errClosed
	}
	lr := b.rooms[room]
	if lr == nil {
		lr = &liveRoom{b: b, name: room, tok: token(room), subs: make(map[*subscription]struct{})}
		nsub, err := b.nc.Subscribe(b.eventPrefix(lr.tok)+">", lr.receive)
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		nsub.SetPendingLimits(1<<20, 256<<20)
		lr.nsub = nsub
		b.rooms[room] = lr
	}
	s := &subscription{lr: lr, deliver: deliver}
	lr.mu.Lock()
	lr.subs[s] = struct{}{}
	lr.mu.Unlock()
	b.mu.Unlock()
	// The server has the interest once it answers a ping sent after the
	// SUB: what is published after Subscribe returns comes here.
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *subscription) Close() error {
	s.once.Do(func() {
		lr := s.lr
		b := lr.b
		b.mu.Lock()
		lr.mu.Lock()
		delete(lr.subs, s)
		empty := len(lr.subs) == 0
		lr.mu.Unlock()
		if empty && b.rooms[lr.name] == lr {
			delete(b.rooms, lr.name)
			lr.nsub.Unsubscribe()
		}
		b.mu.Unlock()
	})
	return nil
}

// receive handles one message on the room's event subjects.
func (lr *liveRoom) receive(m *nats.Msg) {
	rest := strings.TrimPrefix(m.Subject, lr.b.eventPrefix(lr.tok))
	var ev hub.Event
	switch {
	case strings.HasPrefix(rest, "p."):
		p, ok := lr.b.livePublication(lr.name, strings.TrimPrefix(rest, "p."), m)
		if !ok {
			return
		}
		lr.mu.Lock()
		defer lr.mu.Unlock()
		if p.Epoch == lr.epoch && p.Offset <= lr.last {
			return // delivered already
		}
		lr.epoch, lr.last = p.Epoch, p.Offset
		if m.Header.Get(hdrPurge) != "" {
			// A purge marker is no publication: the next one's Prev names
			// it, and the hub finds the history cut when it reads the gap.
			return
		}
		ev = hub.Event{Kind: hub.EventPublication, Publication: p}
		for s := range lr.subs {
			s.deliver(ev)
		}
		return
	case rest == "join" || rest == "leave":
		var c hub.ClientInfo
		if json.Unmarshal(m.Data, &c) != nil {
			return
		}
		ev = hub.Event{Kind: hub.EventJoin, Client: c}
		if rest == "leave" {
			ev.Kind = hub.EventLeave
		}
	default:
		return
	}
	lr.mu.Lock()
	for s := range lr.subs {
		s.deliver(ev)
	}
	lr.mu.Unlock()
}

// livePublication reads a message republished by the stream: its headers
// carry the sequence (the offset), the previous sequence on the same
// subject (Prev) and the time it was stored; its subject carries the
// incarnation of the stream that stored it.
func (b *Broker) livePublication(room, id string, m *nats.Msg) (hub.Publication, bool) {
	seq, err1 := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	prev, err2 := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	if err1 != nil || err2 != nil {
		return hub.Publication{}, false
	}
	inc := b.incarnation()
	if id != inc.id {
		// Stored by another incarnation of the stream: learn the current
		// one, and drop what an old one sent on its way out.
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
		_, inc, _ = b.streamInfo(ctx)
		cancel()
		if id != inc.id {
			return hub.Publication{}, false
		}
	}
	p := hub.Publication{
		Room:     room,
		Position: hub.Position{Offset: seq, Epoch: inc.epoch},
		Prev:     prev,
		Data:     m.Data,
	}
	p.Time, _ = time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	p.From = fromHeader(m.Header)
	return p, true
}

func fromHeader(h nats.Header) *hub.ClientInfo {
	v := h.Get(hdrFrom)
	if v == "" {
		return nil
	}
	var c hub.ClientInfo
	if json.Unmarshal([]byte(v), &c) != nil {
		return nil
	}
	return &c
}

// watchConnection refreshes the incarnation after a reconnect: the stream
// may have been created again while this node was away.
func (b *Broker) watchConnection() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case _, ok := <-b.status:
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
			b.streamInfo(ctx)
			b.catchUp(ctx)
			cancel()
		}
	}
}

// catchUp runs after a reconnect: what was republished while this node was
// away never came, and its rooms would learn of it only from their next
// publication's Prev. Each room reads what follows the last publication it
// delivered and delivers it, chained from there.
func (b *Broker) catchUp(ctx context.Context) {
	b.mu.Lock()
	rooms := make([]*liveRoom, 0, len(b.rooms))
	for _, lr := range b.rooms {
		rooms = append(rooms, lr)
	}
	b.mu.Unlock()
	for _, lr := range rooms {
		lr.mu.Lock()
		since := hub.Position{Offset: lr.last, Epoch: lr.epoch}
		lr.mu.Unlock()
		if since.Epoch == "" {
			continue // nothing delivered here yet: nothing to follow
		}
		h, err := b.History(ctx, lr.name, hub.HistoryQuery{Since: &since, Limit: b.opts.HistorySize})
		if err != nil {
			continue // the hub finds the gap at the next publication
		}
		lr.mu.Lock()
		for _, p := range h.Publications {
			if p.Epoch != lr.epoch || p.Offset <= lr.last {
				continue
			}
			lr.last = p.Offset
			for s := range lr.subs {
				s.deliver(hub.Event{Kind: hub.EventPublication, Publication: p})
			}
		}
		lr.mu.Unlock()
	}
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close implements hub.Broker: subscriptions end, this broker's presence
// entries are removed, and later calls fail. The NATS connection stays
// open.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	rooms := b.rooms
	b.rooms = map[string]*liveRoom{}
	present := b.present
	b.present = map[presKey]hub.ClientInfo{}
	b.mu.Unlock()
	for _, lr := range rooms {
		lr.nsub.Unsubscribe()
		lr.mu.Lock()
		clear(lr.subs)
		lr.mu.Unlock()
	}
	close(b.stop)
	b.nc.RemoveStatusListener(b.status)
	b.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	for k, c := range present {
		b.removePresence(ctx, k, c)
	}
	return nil
}
