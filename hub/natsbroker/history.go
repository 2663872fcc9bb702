package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/duplexws/duplex/hub"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// storedMsg is one message read from a stream by direct get.
type storedMsg struct {
	seq  uint64
	subj string
	time time.Time
	hdr  nats.Header
	data []byte
}

func (m *storedMsg) purge() bool { return m.hdr.Get(hdrPurge) != "" }

// directReq is the body of a direct get ($JS.API.DIRECT.GET.<stream>).
type directReq struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

var errNoMessage = errors.New("natsbroker: no message")

// directBatch reads up to req.Batch messages of stream from req.Seq on,
// matching req.NextFor, in one request: the server answers from a
// consistent view (stream.go getDirectRequest holds the stream's isolation
// lock) with the messages and an end-of-batch status carrying how many more
// match (Nats-Num-Pending). The server may end a batch early at its byte
// limit; pending then says so.
func (b *Broker) directBatch(ctx context.Context, stream string, req directReq, fn func(*storedMsg)) (n int, pending uint64, err error) {
	body, _ := json.Marshal(req)
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, err
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1)
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return 0, 0, err
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return n, 0, err
		}
		if len(m.Data) == 0 {
			switch m.Header.Get("Status") {
			case "":
				// A message with no data (a purge marker): below.
			case "204": // end of batch
				pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return n, pending, nil
			case "404":
				if n == 0 {
					return 0, 0, errNoMessage
				}
				return n, 0, nil
			case "503":
				return n, 0, jetstream.ErrStreamNotFound
			default:
				return n, 0, fmt.Errorf("natsbroker: direct get: %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
			}
		}
		sm := &storedMsg{subj: m.Header.Get(jetstream.SubjectHeader), hdr: m.Header, data: m.Data}
		sm.seq, err = strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return n, 0, fmt.Errorf("natsbroker: direct get: bad sequence %q", m.Header.Get(jetstream.SequenceHeader))
		}
		sm.time, _ = time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		n++
		fn(sm)
		if req.Batch == 0 {
			return n, 0, nil // a single get has no end-of-batch
		}
	}
}

// attemptTimeout bounds one attempt of a history read; see History.
const attemptTimeout = 2 * time.Second

// errChanged says that the room changed under a read (its start removed
// while read in several batches, the stream created again): the caller
// reads again.
var errChanged = errors.New("natsbroker: history changed while read")

// errStale says that the replica that answered a read lacked what the
// stream's leader holds: the caller reads again from the leader.
var errStale = errors.New("natsbroker: a replica lagged behind the stream's leader")

// readRoom reads the messages of subject subj from sequence from on (from
// itself included), in order, until fn returns false (then stopped is true)
// or there are no more. With join, the message at from must still be
// stored, and is not handed to fn: the read continues an earlier one that
// ended there, and since messages leave a room only as a prefix of it,
// nothing between them was removed.
//
// viaLeader reads with the leader's message gets, one message per request;
// otherwise with direct gets in batches of up to batch (0 for as many as
// the server sends), answered by whichever replica is nearest. Each batch
// comes from one consistent view of one replica's store (stream.go
// getDirectRequest holds the stream's isolation lock), and batches join as
// above: whatever the replica, what the read returns is a run of the room
// with no hole in it, though it may end early when the replica lags.
func (b *Broker) readRoom(ctx context.Context, subj string, from uint64, join bool, batch int, viaLeader bool, fn func(*storedMsg) bool) (stopped bool, err error) {
	if viaLeader {
		seq := from
		for {
			m, err := b.leaderGet(ctx, b.stream, directReq{Seq: seq, NextFor: subj})
			if errors.Is(err, errNoMessage) {
				if join {
					return false, errChanged
				}
				return false, nil
			}
			if err != nil {
				return false, err
			}
			seq = m.seq + 1
			if join {
				join = false
				if m.seq != from {
					return false, errChanged
				}
				continue
			}
			if !fn(m) {
				return true, nil
			}
		}
	}
	if batch <= 0 || batch > 1024 {
		batch = 1024
	}
	for {
		more, first := true, true
		var last uint64
		var errc error
		req := directReq{Seq: from, NextFor: subj, Batch: batch}
		if join {
			req.Batch++ // the joining message comes again
		}
		_, pending, err := b.directBatch(ctx, b.stream, req, func(m *storedMsg) {
			if !more || errc != nil {
				return
			}
			if first && join {
				first = false
				if m.seq != from {
					errc = errChanged
				}
				return // read already
			}
			first = false
			last = m.seq
			more = fn(m)
		})
		if errors.Is(err, errNoMessage) {
			if join {
				return false, errChanged
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if errc != nil {
			return false, errc
		}
		if !more {
			return true, nil
		}
		if pending == 0 || last == 0 {
			return false, nil
		}
		from, join = last, true
	}
}

// History implements hub.Broker; the package doc states the recovery rule
// it applies to q.Since, and how it reads in a cluster.
func (b *Broker) History(ctx context.Context, room string, q hub.HistoryQuery) (hub.History, error) {
	if room == "" {
		return hub.History{}, errors.New("natsbroker: empty room name")
	}
	if b.isClosed() {
		return hub.History{}, errClosed
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	var (
		err       error
		changes   int
		viaLeader bool
	)
	for attempt := 0; ; attempt++ {
		// A request sent just as the connection dropped gets no answer:
		// the first attempts have a short time of their own, so that a
		// reconnect costs a retry and not the caller's whole deadline.
		actx, acancel := ctx, context.CancelFunc(func() {})
		if attempt < 2 {
			actx, acancel = context.WithTimeout(ctx, attemptTimeout)
		}
		var h hub.History
		h, err = b.history(actx, room, q, viaLeader)
		lost := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		acancel()
		switch {
		case errors.Is(err, errStale):
			b.fallbacks.Add(1)
			viaLeader = true
			changes++
		case errors.Is(err, errChanged):
			changes++
		case lost:
		case errors.Is(err, errNoLeader), errors.Is(err, nats.ErrNoResponders):
			// An election, or JetStream not up yet: wait for it as long
			// as the caller does.
			select {
			case <-ctx.Done():
				return hub.History{}, err
			case <-time.After(100 * time.Millisecond):
			}
		default:
			return h, err
		}
		if changes >= 3 {
			break
		}
		if ctx.Err() != nil {
			return hub.History{}, err
		}
	}
	if q.Since != nil {
		return hub.History{}, hub.ErrUnrecoverable
	}
	return hub.History{}, err
}

func (b *Broker) history(ctx context.Context, room string, q hub.HistoryQuery, viaLeader bool) (hub.History, error) {
	subj := b.roomSubject(token(room))
	info, inc, err := b.streamInfo(ctx)
	if err != nil {
		return hub.History{}, fmt.Errorf("natsbroker: history of %q: %w", room, err)
	}
	limit := max(q.Limit, 0)
	var since uint64
	if q.Since != nil {
		since = q.Since.Offset
		if q.Since.Epoch != inc.epoch || since > info.State.LastSeq {
			return hub.History{}, hub.ErrUnrecoverable
		}
	}
	// The room's last message at the leader as the read starts: the read
	// must get that far, unless it stops on its limit before.
	var anchor uint64
	if m, err := b.leaderGet(ctx, b.stream, directReq{LastFor: subj}); err == nil {
		anchor = m.seq
	} else if !errors.Is(err, errNoMessage) {
		return hub.History{}, fmt.Errorf("natsbroker: history of %q: %w", room, err)
	}

	// Read: with Since, from Since itself (to see whether it is still
	// stored) and at least one message after it (to see a purge marker
	// right after it); without, the room from its oldest message, starting
	// afresh after any purge marker. Reverse reads to the end and keeps the
	// newest limit.
	var (
		pubs        []hub.Publication
		prev        = since // the offset before the next one read
		purged      bool
		first, last uint64 // the first and the last message read
		stopped     bool
	)
	if q.Since != nil || limit > 0 {
		batch := limit
		if q.Since != nil {
			batch = max(limit, 1) + 1
		}
		if q.Reverse {
			batch = 0 // to the end
		}
		fn := func(m *storedMsg) bool {
			if first == 0 {
				first = m.seq
			}
			last = m.seq
			if q.Since != nil && m.seq == since {
				return true // Since itself, still stored
			}
			if m.purge() {
				if q.Since != nil {
					purged = true
					return false
				}
				pubs, prev = pubs[:0], m.seq
				return true
			}
			if limit == 0 {
				return false // only looked for a purge marker after Since
			}
			pubs = append(pubs, b.storedPublication(room, inc.epoch, prev, m))
			prev = m.seq
			if !q.Reverse {
				return len(pubs) < limit
			}
			if len(pubs) > limit {
				pubs = pubs[1:]
			}
			return true
		}
		stopped, err = b.readRoom(ctx, subj, since, false, batch, viaLeader, fn)
		if err == nil && !stopped && last < anchor {
			// The replica that answered has not yet got as far as the
			// leader had when the read began: read the rest from the
			// leader, joined to what was read.
			if !viaLeader {
				b.fallbacks.Add(1)
			}
			switch {
			case viaLeader:
				err = errChanged // the anchor was removed meanwhile
			case last == 0:
				_, err = b.readRoom(ctx, subj, since, false, batch, true, fn)
			default:
				_, err = b.readRoom(ctx, subj, last, true, batch, true, fn)
				if errors.Is(err, errChanged) {
					// The leader no longer has the replica's last
					// message: the replica is behind on a removal too.
					err = errStale
				}
			}
		}
		if err != nil {
			return hub.History{}, err
		}
		if purged {
			return hub.History{}, hub.ErrUnrecoverable
		}
		// Where the read began must be where the leader's room begins
		// now: its first message from Since on. Then the read is a run of
		// the room from there (see readRoom), and a purge past Since,
		// which leaves its marker first, shows. A replica that still
		// holds what the leader has removed, or lacks what the leader
		// holds, disagrees: read again from the leader.
		var lead uint64
		m, err := b.leaderGet(ctx, b.stream, directReq{Seq: since, NextFor: subj})
		switch {
		case err == nil:
			lead = m.seq
		case !errors.Is(err, errNoMessage):
			return hub.History{}, err
		}
		if lead != first {
			if q.Since != nil && m != nil && m.purge() && lead > since {
				return hub.History{}, hub.ErrUnrecoverable // purged since the read
			}
			if viaLeader {
				return hub.History{}, errChanged
			}
			return hub.History{}, errStale
		}
		if q.Reverse {
			slices.Reverse(pubs)
		}
	}

	// Latest: the room's last message, at least as far as the read went;
	// for an empty room, where the stream was.
	latest := max(anchor, last)
	if latest == 0 {
		latest = info.State.LastSeq
	}
	// The stream's state after the read, from its leader: what was
	// removed by then includes all that was removed before or during the
	// read.
	after, inc2, err := b.streamInfoOf(ctx, subj)
	if err != nil {
		return hub.History{}, err
	}
	if inc2.epoch != inc.epoch {
		return hub.History{}, errChanged // created again while read
	}
	h := hub.History{Publications: pubs, Latest: hub.Position{Offset: latest, Epoch: inc.epoch}}
	if q.Since == nil {
		return h, nil
	}
	// The room's count limit as the stream has it now (another node may
	// have set it); none means no count trimming at all.
	count := after.State.Subjects[subj]
	full := after.Config.MaxMsgsPerSubject > 0 && count >= uint64(after.Config.MaxMsgsPerSubject)
	vouched := since != 0 && first == since || // (a) Since itself is still stored
		!full && since+1 >= after.State.FirstSeq // (b) nothing after Since was removed
	if !vouched {
		return hub.History{}, hub.ErrUnrecoverable
	}
	if h.Latest.Offset < since {
		h.Latest.Offset = since
	}
	return h, nil
}

// storedPublication makes a publication of a stored message; prev is the
// offset the caller knows to precede it in the room.
func (b *Broker) storedPublication(room, epoch string, prev uint64, m *storedMsg) hub.Publication {
	return hub.Publication{
		Room:     room,
		Position: hub.Position{Offset: m.seq, Epoch: epoch},
		Prev:     prev,
		Time:     m.time,
		From:     fromHeader(m.hdr),
		Data:     json.RawMessage(m.data),
	}
}
