package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// sseHeartbeat is how often an idle event stream sends a comment line, so
// that proxies do not time it out and a vanished client is noticed.
const sseHeartbeat = 25 * time.Second

// ServeEvents streams a room's publications as Server-Sent Events: the
// one-way alternative to the WebSocket endpoint, for an EventSource.
//
// Each publication is an event whose id is its position ("epoch-offset")
// and whose data is the same JSON as the WebSocket protocol's pub push. The
// stream starts with a "subscribed" event (data: {"room", "position",
// "recovered"}, position being where live events start; id: the position
// just before the first publication that follows). A client that
// reconnects sends the last id it saw as Last-Event-ID, which browsers do by
// themselves, and is caught up exactly as a WebSocket subscriber recovering
// from that position: every publication it missed, or "recovered": false and
// none. A first connection may ask for a start position with ?since=ID and
// for the latest publications with ?recent=N.
//
// The authentication hook sees the request (cookies, headers) with no token;
// the authorization hook is asked for ActionSubscribe. A stream whose client
// reads too slowly is ended (the client reconnects and recovers).
//
// A stream holds a socket and a buffer as a WebSocket does, so it counts as
// one: against MaxConnections, ConnLimit and HandshakeRate (refused with
// 503 or 429 and Retry-After), and its buffer in Stats' queue depth.
func (h *Hub) ServeEvents(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !validRoom(name) {
		http.Error(w, "invalid room name", http.StatusBadRequest)
		return
	}
	if h.ctx.Err() != nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	release, err := h.ws.Reserve(w, r) // answers the refusal itself
	if err != nil {
		return
	}
	defer release()
	h.eventStreams.Add(1)
	defer h.eventStreams.Add(-1)
	since, err := eventStreamSince(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	recent := 0
	if v := r.URL.Query().Get("recent"); v != "" {
		if recent, err = strconv.Atoi(v); err != nil || recent < 0 {
			http.Error(w, "recent must be a count", http.StatusBadRequest)
			return
		}
	}
	ctx := r.Context()
	info := ClientInfo{Client: newClientID()}
	if auth := h.opts.Authenticate; auth != nil {
		id, err := auth(ctx, ConnectRequest{Request: r, EventStream: true})
		if err != nil {
			e := asError(err, CodeUnauthorized, "unauthorized")
			http.Error(w, e.Message, e.Code)
			return
		}
		info.User, info.Info = id.User, id.Info
	}
	if authz := h.opts.Authorize; authz != nil {
		if err := authz(ctx, info, name, ActionSubscribe); err != nil {
			e := asError(err, CodeForbidden, "forbidden")
			http.Error(w, e.Message, e.Code)
			return
		}
	}
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if r.Method == http.MethodHead {
		return
	}

	st := &eventStream{h: h, wake: make(chan struct{}, 1)}
	// Deferred first, so that it runs last: once the stream is detached,
	// nothing adds to its buffer.
	defer st.discard()
	var rm *room
	var sub *subscription
	for attempt := 0; ; attempt++ {
		if rm, err = h.acquire(ctx, name); err != nil {
			http.Error(w, "broker unavailable, retry later", http.StatusServiceUnavailable)
			return
		}
		sub = &subscription{s: st, room: rm}
		err = rm.attach(ctx, sub, attachRequest{since: since, recent: recent}, func(res attachResult) {
			st.start(rm.name, res)
		})
		if err == nil {
			break
		}
		h.release(rm)
		if !errors.Is(err, errRoomRetired) || attempt >= 3 {
			http.Error(w, "broker unavailable, retry later", http.StatusServiceUnavailable)
			return
		}
	}
	defer h.release(rm)
	h.subscriptions.Add(1)
	defer h.subscriptions.Add(-1)
	defer rm.detach(sub)
	w.WriteHeader(http.StatusOK)
	st.run(ctx, w, rc)
}

// eventStreamSince reads the position to resume from: Last-Event-ID, or the
// since query parameter.
func eventStreamSince(r *http.Request) (*Position, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("since")
	}
	if v == "" {
		return nil, nil
	}
	i := strings.LastIndexByte(v, '-')
	if i <= 0 {
		return nil, errors.New("an event id is epoch-offset")
	}
	off, err := strconv.ParseUint(v[i+1:], 10, 64)
	if err != nil {
		return nil, errors.New("an event id is epoch-offset")
	}
	return &Position{Epoch: v[:i], Offset: off}, nil
}

// eventStream is the subscriber of one Server-Sent Events response: events
// are formatted into buf as they come and written by the handler's
// goroutine. What buf holds, and what is being written, counts in the hub's
// queue depth (Stats.QueuedBytes and QueuedMessages).
type eventStream struct {
	h    *Hub
	wake chan struct{} // a send means buf has something or the stream ends

	mu     sync.Mutex
	buf    bytes.Buffer
	events int
	// writingBytes and writingEvents are what run took out of buf and is
	// writing: they count against QueueBytes and QueueMessages too, as a
	// WebSocket's batch being written does, so that a stream holds at most
	// the bound, not twice it.
	writingBytes, writingEvents int
	ended                       bool
}

type sseSubscribed struct {
	Room      string   `json:"room"`
	Position  Position `json:"position"`
	Recovered *bool    `json:"recovered,omitempty"`
}

// start queues the stream's first events: retry, subscribed, the caught up
// publications. It runs under the room's lock, before any live event.
func (st *eventStream) start(room string, res attachResult) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.buf.WriteString("retry: 1000\n")
	st.h.queuedBytes.Add(int64(len("retry: 1000\n")))
	data, _ := json.Marshal(sseSubscribed{Room: room, Position: res.position, Recovered: res.recovered})
	// The event's id is the position just before the first publication
	// that follows it, so that a client cut off before that publication
	// resumes from there, not from where live delivery starts.
	id := res.position
	if len(res.pubs) > 0 {
		id = Position{Offset: res.pubs[0].Prev, Epoch: res.pubs[0].Epoch}
	}
	st.writeEventLocked("subscribed", id, data)
	for i := range res.pubs {
		st.writeEventLocked("", res.pubs[i].Position, encodePub(&res.pubs[i], true))
	}
	st.poke()
}

func (st *eventStream) writeEventLocked(event string, id Position, data []byte) {
	before := st.buf.Len()
	defer func() {
		st.h.queuedBytes.Add(int64(st.buf.Len() - before))
		st.h.queuedMsgs.Add(1)
	}()
	if event != "" {
		st.buf.WriteString("event: ")
		st.buf.WriteString(event)
		st.buf.WriteByte('\n')
	}
	st.buf.WriteString("id: ")
	st.buf.WriteString(id.String())
	st.buf.WriteString("\ndata: ")
	st.buf.Write(data) // JSON from encoding/json: one line
	st.buf.WriteString("\n\n")
	st.events++
}

func (st *eventStream) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// deliver implements subscriber: publications only (an event stream has no
// presence).
func (st *eventStream) deliver(ev *Event, msg []byte, _ *websocket.PreparedMessage, _ *writerStarts) bool {
	if ev.Kind != EventPublication {
		return true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return false
	}
	if st.writingBytes+st.buf.Len()+len(msg) > st.h.opts.QueueBytes || st.writingEvents+st.events+1 > st.h.opts.QueueMessages {
		st.endLocked(true)
		return false
	}
	st.writeEventLocked("", ev.Publication.Position, msg)
	st.poke()
	return true
}

func (st *eventStream) overflow() {
	st.mu.Lock()
	st.endLocked(true)
	st.mu.Unlock()
}

func (st *eventStream) disconnect(websocket.StatusCode, string) {
	st.mu.Lock()
	st.endLocked(false)
	st.mu.Unlock()
}

// discard ends the stream and takes what its buffer still holds out of the
// hub's queue depth.
func (st *eventStream) discard() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ended = true
	st.h.queuedBytes.Add(-int64(st.buf.Len()))
	st.h.queuedMsgs.Add(-int64(st.events))
	st.buf.Reset()
	st.events = 0
}

func (st *eventStream) endLocked(slow bool) {
	if st.ended {
		return
	}
	st.ended = true
	if slow {
		st.h.slowConsumers.Add(1)
	}
	st.poke()
}

// run writes the stream until the client goes, the stream is ended, or the
// hub shuts down.
func (st *eventStream) run(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController) {
	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	var out bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.h.ctx.Done():
			return
		case <-heartbeat.C:
			out.WriteString(": heartbeat\n\n")
		case <-st.wake:
		}
		st.mu.Lock()
		out.Write(st.buf.Bytes())
		queuedBytes, queuedEvents := st.buf.Len(), st.events
		st.writingBytes, st.writingEvents = queuedBytes, queuedEvents
		st.buf.Reset()
		st.events = 0
		ended := st.ended
		st.mu.Unlock()
		if out.Len() > 0 {
			rc.SetWriteDeadline(time.Now().Add(websocket.DefaultWriteTimeout))
			_, err := w.Write(out.Bytes())
			if err == nil {
				err = rc.Flush()
			}
			out.Reset()
			st.mu.Lock()
			st.writingBytes, st.writingEvents = 0, 0
			st.mu.Unlock()
			st.h.queuedBytes.Add(-int64(queuedBytes))
			st.h.queuedMsgs.Add(-int64(queuedEvents))
			if err != nil {
				return
			}
		}
		if ended {
			return
		}
	}
}
