package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// errChanged says that a read spanning several batches saw its start
// removed meanwhile: the caller reads again.
var errChanged = errors.New("natsbroker: history changed while read")

// readRoom reads the messages of subject subj from sequence from on, in
// order, until fn returns false or there are no more. Between batches it
// checks that the last message read is still stored (the next batch starts
// at it): messages leave a room only as a prefix, so then nothing after it
// was removed and the batches join without a hole.
func (b *Broker) readRoom(ctx context.Context, subj string, from uint64, batch int, fn func(*storedMsg) bool) error {
	if batch <= 0 || batch > 1024 {
		batch = 1024
	}
	var last uint64
	for {
		more := true
		req := directReq{Seq: from, NextFor: subj, Batch: batch}
		first := true
		cont := last != 0
		var errc error
		n, pending, err := b.directBatch(ctx, b.stream, req, func(m *storedMsg) {
			if !more || errc != nil {
				return
			}
			if first && cont {
				first = false
				if m.seq != last {
					errc = errChanged
				}
				return // read already
			}
			first = false
			last = m.seq
			more = fn(m)
		})
		if errors.Is(err, errNoMessage) {
			if cont {
				return errChanged
			}
			return nil
		}
		if err != nil {
			return err
		}
		if errc != nil {
			return errc
		}
		if !more || pending == 0 || n == 0 {
			return nil
		}
		from = last
	}
}

// roomHead reads the first message stored on subj and how many are stored.
func (b *Broker) roomHead(ctx context.Context, subj string) (first uint64, count uint64, err error) {
	n, pending, err := b.directBatch(ctx, b.stream, directReq{NextFor: subj, Batch: 1}, func(m *storedMsg) { first = m.seq })
	if errors.Is(err, errNoMessage) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	return first, uint64(n) + pending, nil
}

// roomLast reads the sequence of the last message stored on subj, 0 for
// none.
func (b *Broker) roomLast(ctx context.Context, subj string) (uint64, error) {
	var seq uint64
	_, _, err := b.directBatch(ctx, b.stream, directReq{LastFor: subj}, func(m *storedMsg) { seq = m.seq })
	return seq, err
}

// History implements hub.Broker; the package doc states the recovery rule
// it applies to q.Since.
func (b *Broker) History(ctx context.Context, room string, q hub.HistoryQuery) (hub.History, error) {
	if room == "" {
		return hub.History{}, errors.New("natsbroker: empty room name")
	}
	if b.isClosed() {
		return hub.History{}, errClosed
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	var err error
	for attempt := range 3 {
		// A request sent just as the connection dropped gets no answer:
		// the first attempts have a short time of their own, so that a
		// reconnect costs a retry and not the caller's whole deadline.
		actx, acancel := ctx, context.CancelFunc(func() {})
		if attempt < 2 {
			actx, acancel = context.WithTimeout(ctx, attemptTimeout)
		}
		var h hub.History
		h, err = b.history(actx, room, q)
		lost := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		acancel()
		if !errors.Is(err, errChanged) && !lost {
			return h, err
		}
	}
	if q.Since != nil {
		return hub.History{}, hub.ErrUnrecoverable
	}
	return hub.History{}, err
}

func (b *Broker) history(ctx context.Context, room string, q hub.HistoryQuery) (hub.History, error) {
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

	// Read: with Since, the messages after it (at least one, to see a
	// purge marker right after it); without, the room from its oldest
	// message, starting afresh after any purge marker. Reverse reads to
	// the end and keeps the newest limit.
	var (
		pubs   []hub.Publication
		prev   = since // the offset before the next one read
		purged bool
		from   uint64
		batch  = limit
	)
	if q.Since != nil {
		from = since + 1
	}
	if q.Reverse {
		batch = 0 // to the end
	}
	if limit == 0 {
		batch = 1
	}
	if q.Since != nil || limit > 0 {
		err = b.readRoom(ctx, subj, from, batch, func(m *storedMsg) bool {
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
		})
	}
	if err != nil {
		return hub.History{}, err
	}
	if purged {
		return hub.History{}, hub.ErrUnrecoverable
	}
	if q.Reverse {
		for i, j := 0, len(pubs)-1; i < j; i, j = i+1, j-1 {
			pubs[i], pubs[j] = pubs[j], pubs[i]
		}
	}

	// Latest, and the stream's state after the read: what was removed by
	// then includes all that was removed before or during the read.
	latest, err := b.roomLast(ctx, subj)
	if errors.Is(err, errNoMessage) {
		latest, err = info.State.LastSeq, nil // empty room: where the stream is
	}
	if err != nil {
		return hub.History{}, err
	}
	after, inc2, err := b.streamInfo(ctx)
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
	first, count, err := b.roomHead(ctx, subj)
	if err != nil {
		return hub.History{}, err
	}
	// The room's count limit as the stream has it now (another node may
	// have set it); none means no count trimming at all.
	full := after.Config.MaxMsgsPerSubject > 0 && count >= uint64(after.Config.MaxMsgsPerSubject)
	vouched := count > 0 && first <= since || // (a) a message at or before Since is still stored
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
