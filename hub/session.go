package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// session is one client's connection to the hub. Its commands run one at a
// time, in the order they came (so replies come in command order), in a
// goroutine that exists only while commands wait (commands.go), so that the
// reading goroutine goes on reading while a command waits on the broker:
// pongs, pings and the peer's close are seen only by a read. Everything the
// session is sent goes through one queue, written by a goroutine that exists
// only while the queue is not empty. An idle client costs no goroutine
// beyond its reader, and none at all in the event-loop mode
// (Options.EventLoop, session_events.go), where callbacks take the reader's
// place.
type session struct {
	h *Hub
	c *websocket.Conn
	// r is the handshake's request, for the authentication hook; dropped
	// once the client connected, so that an idle client does not pin its
	// headers. remote is its RemoteAddr, for the end's log line.
	r      *http.Request
	remote string
	info   ClientInfo
	subs   map[string]*subscription // owned by the command runner
	lim    tokenBucket
	// writeFn is s.write, made once.
	writeFn func()

	cmds commandRunner
	// connectedAt is when the connect command succeeded; zero before.
	// Written by the reader (or the event loop's callback) before the
	// runner starts, read by finish after it stopped.
	connectedAt time.Time
	// events is the event-loop mode's part (session_events.go); nil in
	// the goroutine mode.
	events *sessionEvents

	mu         sync.Mutex
	queue      []outgoing
	spare      []outgoing // the writer's last batch, reused
	queued     int        // bytes of counted messages queued or being written
	queuedMsgs int        // counted messages queued or being written
	writing    bool       // its writing runs: a writer goroutine, or a fan-out group (writers.go)
	closed     bool       // nothing more is queued
	closeCode  websocket.StatusCode
	closeWhy   string
}

// outgoing is one queued message: a shared prepared message (publications,
// presence events) or bytes of this session's own (replies).
type outgoing struct {
	pm      *websocket.PreparedMessage
	data    []byte
	n       int
	counted bool // counts against QueueBytes and QueueMessages
}

func newClientID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newSession makes the session of a client whose connection c (nil until
// the event loop's first callback gives it, see bind) came with r, counted
// in Stats from now until finish.
func (h *Hub) newSession(c *websocket.Conn, r *http.Request) *session {
	h.sessions.Add(1)
	s := &session{h: h, c: c, r: r, remote: r.RemoteAddr, subs: make(map[string]*subscription)}
	s.writeFn = s.write
	if h.opts.PublishRate > 0 {
		s.lim = tokenBucket{rate: h.opts.PublishRate, burst: float64(h.opts.PublishBurst), tokens: float64(h.opts.PublishBurst), last: time.Now()}
	}
	return s
}

// serve is ServeHTTP's handler, for one connection, in the goroutine mode:
// this goroutine reads the client's messages and hands them to the session
// (Options.EventLoop's mode hands them from callbacks, session_events.go).
func (h *Hub) serve(ctx context.Context, c *websocket.Conn, r *http.Request) (err error) {
	s := h.newSession(c, r)
	// The commands' context ends as soon as reading does, so that a command
	// waiting on the broker gives up before the connection closes (which
	// waits for this handler).
	cctx, stop := context.WithCancel(ctx)
	s.cmds.start(cctx, s.run)
	defer func() { s.finish(stop, err) }()
	first, err := s.readConnect(ctx)
	if err != nil {
		return err
	}
	if err := s.connect(ctx, first); err != nil {
		return err
	}
	var buf []byte
	for {
		msg, rerr := c.ReadInto(ctx, buf)
		if rerr != nil {
			return rerr
		}
		buf = msg.Data[:0]
		if err := s.command(ctx, msg); err != nil {
			return err
		}
	}
}

// readConnect reads the client's first message, which must come within
// ConnectTimeout.
func (s *session) readConnect(ctx context.Context) (websocket.Message, error) {
	cctx, cancel := context.WithTimeout(ctx, s.h.opts.ConnectTimeout)
	msg, err := s.c.Read(cctx)
	cancel()
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return msg, s.connectTimedOut()
	}
	return msg, err
}

// connectTimedOut is the end of a client that sent nothing within
// ConnectTimeout.
func (s *session) connectTimedOut() error {
	return s.closeErr(CloseConnectTimeout, "connect timeout")
}

// command queues a message after connect for the command runner. It waits
// while maxPendingCommands are pending (the pressure goes back to the
// client). An error ends the connection.
func (s *session) command(ctx context.Context, msg websocket.Message) error {
	// parseCommand copies what it keeps (json.RawMessage copies), so
	// msg.Data can be read into again while the command waits its turn.
	cmd, ok := parseCommand(msg)
	if !ok {
		return s.closeErr(CloseBadRequest, errNotACommand)
	}
	return s.cmds.add(ctx, cmd)
}

// finish ends the session once its connection has ended with err: the
// commands are stopped with stop (their context's cancel) and waited for,
// one line is logged for a client that connected, and the client leaves
// its rooms.
func (s *session) finish(stop context.CancelFunc, err error) {
	s.cmds.stop(stop)
	if !s.connectedAt.IsZero() {
		// One line per client that connected, as the echo endpoint logs.
		code, by := websocket.StatusAbnormalClosure, "network"
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.StatusAbnormalClosure {
			code, by = ce.Code, "server"
			if ce.Remote {
				by = "peer"
			}
		}
		s.h.log.Info("hub client disconnected", "client", s.info.Client, "user", s.info.User, "remote", s.remote,
			"code", int(code), "by", by, "rooms", len(s.subs), "duration", time.Since(s.connectedAt).Round(time.Millisecond))
	}
	s.end()
	s.h.sessions.Add(-1)
}

// connect runs the client's first message, which must be the connect
// command: the authentication hook decides it. An error ends the
// connection.
func (s *session) connect(ctx context.Context, msg websocket.Message) error {
	cmd, ok := parseCommand(msg)
	if !ok {
		return s.closeErr(CloseBadRequest, errNotACommand)
	}
	if cmd.Op != "connect" {
		s.replyNow(cmd.ID, nil, &Error{Code: CodeUnauthorized, Message: "connect first"})
		return s.closeErr(CloseUnauthorized, "connect first")
	}
	id := Identity{}
	if auth := s.h.opts.Authenticate; auth != nil {
		var err error
		id, err = auth(ctx, ConnectRequest{Request: s.r, Token: cmd.Token, Data: cmd.Data})
		if err != nil {
			e := asError(err, CodeUnauthorized, "unauthorized")
			s.h.log.Info("hub: connect refused", "remote", s.c.RemoteAddr().String(), "error", err)
			s.replyNow(cmd.ID, nil, e)
			return s.closeErr(CloseUnauthorized, e.Message)
		}
	}
	if len(id.Info) > 0 && !json.Valid(id.Info) {
		id.Info = nil
	}
	s.info = ClientInfo{Client: newClientID(), User: id.User, Info: id.Info}
	s.connectedAt = time.Now()
	s.r = nil
	s.sendReply(cmd.ID, connectResult{Client: s.info.Client, User: s.info.User, Version: 1}, nil)
	return nil
}

// run runs one command after connect.
func (s *session) run(ctx context.Context, cmd *command) {
	switch cmd.Op {
	case "connect":
		s.sendReply(cmd.ID, nil, &Error{Code: CodeBadRequest, Message: "already connected"})
	case "subscribe":
		s.subscribe(ctx, cmd)
	case "unsubscribe":
		if sub := s.subs[cmd.Room]; sub != nil {
			s.unsubscribe(ctx, sub)
		}
		s.sendReply(cmd.ID, struct{}{}, nil)
	case "publish":
		s.publish(ctx, cmd)
	case "history":
		s.history(ctx, cmd)
	case "presence":
		s.presence(ctx, cmd)
	default:
		s.sendReply(cmd.ID, nil, &Error{Code: CodeBadRequest, Message: "unknown op " + truncate(cmd.Op, 32)})
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// check validates the room and asks the authorization hook.
func (s *session) check(ctx context.Context, cmd *command, a Action) *Error {
	if !validRoom(cmd.Room) {
		return &Error{Code: CodeBadRequest, Message: "invalid room name"}
	}
	if authz := s.h.opts.Authorize; authz != nil {
		if err := authz(ctx, s.info, cmd.Room, a); err != nil {
			return asError(err, CodeForbidden, "forbidden")
		}
	}
	return nil
}

// brokerError is the reply for a broker failure.
func (s *session) brokerError(err error) *Error {
	s.h.log.Warn("hub: broker call failed", "error", err)
	return asError(err, CodeUnavailable, "broker unavailable, retry later")
}

func (s *session) subscribe(ctx context.Context, cmd *command) {
	if e := s.check(ctx, cmd, ActionSubscribe); e != nil {
		s.sendReply(cmd.ID, nil, e)
		return
	}
	if s.subs[cmd.Room] != nil {
		s.sendReply(cmd.ID, nil, &Error{Code: CodeConflict, Message: "already subscribed"})
		return
	}
	if len(s.subs) >= s.h.opts.MaxSubscriptions {
		s.sendReply(cmd.ID, nil, &Error{Code: CodeBadRequest, Message: "too many subscriptions"})
		return
	}
	var r *room
	var sub *subscription
	var err error
	req := attachRequest{since: cmd.Since, recent: cmd.Recent, presence: cmd.Presence}
	for attempt := 0; ; attempt++ {
		if r, err = s.h.acquire(ctx, cmd.Room); err != nil {
			s.sendReply(cmd.ID, nil, s.brokerError(err))
			return
		}
		sub = &subscription{s: s, room: r, presence: cmd.Presence}
		err = r.attach(ctx, sub, req, func(res attachResult) {
			// Under the room's lock: nothing live for this room is queued
			// before the reply.
			s.sendReply(cmd.ID, subscribeResult{Room: r.name, Position: res.position, Recovered: res.recovered,
				Publications: encodePubs(res.pubs), Presence: res.presence}, nil)
		})
		if err == nil {
			break
		}
		s.h.release(r)
		if !errors.Is(err, errRoomRetired) || attempt >= 3 {
			s.sendReply(cmd.ID, nil, s.brokerError(err))
			return
		}
	}
	s.subs[cmd.Room] = sub
	s.h.subscriptions.Add(1)
	s.join(ctx, sub)
}

// defaultHistoryLimit is the limit of a history command that gives none.
const defaultHistoryLimit = 100

// join enters the client in the room's presence.
func (s *session) join(ctx context.Context, sub *subscription) {
	if err := s.h.broker.Join(ctx, sub.room.name, s.info); err != nil {
		s.h.log.Warn("hub: presence join failed", "room", sub.room.name, "error", err)
	}
}

// unsubscribe ends a subscription: out of the room, the room's reference
// given back, out of presence.
func (s *session) unsubscribe(ctx context.Context, sub *subscription) {
	r := sub.room
	r.detach(sub)
	delete(s.subs, r.name)
	s.h.subscriptions.Add(-1)
	s.h.release(r)
	// Leave even when the connection is ending: ctx is then done, so give
	// the broker a moment of its own.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.h.broker.Leave(lctx, sub.room.name, s.info); err != nil {
		s.h.log.Warn("hub: presence leave failed", "room", sub.room.name, "error", err)
	}
}

func (s *session) publish(ctx context.Context, cmd *command) {
	if e := s.check(ctx, cmd, ActionPublish); e != nil {
		s.sendReply(cmd.ID, nil, e)
		return
	}
	if len(cmd.Data) > s.h.opts.MaxPublicationSize {
		s.sendReply(cmd.ID, nil, &Error{Code: CodeTooLarge, Message: "publication too large"})
		return
	}
	if len(cmd.Data) == 0 {
		s.sendReply(cmd.ID, nil, &Error{Code: CodeBadRequest, Message: "publish needs data"})
		return
	}
	if !s.lim.allow(time.Now()) {
		s.sendReply(cmd.ID, nil, &Error{Code: CodeRateLimited, Message: "publish rate limit, retry later"})
		return
	}
	from := s.info
	pos, err := s.h.publish(ctx, cmd.Room, Message{Data: cmd.Data, Key: cmd.Key, From: &from})
	if err != nil {
		s.sendReply(cmd.ID, nil, s.brokerError(err))
		return
	}
	s.sendReply(cmd.ID, publishResult{Position: pos}, nil)
}

func (s *session) history(ctx context.Context, cmd *command) {
	if e := s.check(ctx, cmd, ActionHistory); e != nil {
		s.sendReply(cmd.ID, nil, e)
		return
	}
	limit := defaultHistoryLimit
	if cmd.Limit != nil {
		limit = max(*cmd.Limit, 0)
	}
	limit = min(limit, s.h.opts.MaxRecover)
	hist, err := s.h.broker.History(ctx, cmd.Room, HistoryQuery{Since: cmd.Since, Limit: limit, Reverse: cmd.Reverse})
	if errors.Is(err, ErrUnrecoverable) {
		s.sendReply(cmd.ID, nil, &Error{Code: CodeGone, Message: err.Error()})
		return
	}
	if err != nil {
		s.sendReply(cmd.ID, nil, s.brokerError(err))
		return
	}
	s.sendReply(cmd.ID, historyResult{Position: hist.Latest, Publications: encodePubs(hist.Publications)}, nil)
}

func (s *session) presence(ctx context.Context, cmd *command) {
	if e := s.check(ctx, cmd, ActionPresence); e != nil {
		s.sendReply(cmd.ID, nil, e)
		return
	}
	stats, err := s.h.broker.PresenceStats(ctx, cmd.Room)
	if err != nil {
		s.sendReply(cmd.ID, nil, s.brokerError(err))
		return
	}
	res := presenceResult{Stats: stats}
	if !cmd.StatsOnly {
		if res.Clients, err = s.h.broker.Presence(ctx, cmd.Room); err != nil {
			s.sendReply(cmd.ID, nil, s.brokerError(err))
			return
		}
		if res.Clients == nil {
			res.Clients = []ClientInfo{}
		}
	}
	s.sendReply(cmd.ID, res, nil)
}

// end runs when the connection's handler returns: the client leaves its
// rooms, and nothing more is queued.
func (s *session) end() {
	ctx := context.Background()
	for _, sub := range s.subs {
		s.unsubscribe(ctx, sub)
	}
	s.mu.Lock()
	s.closed = true
	s.dropQueueLocked()
	s.mu.Unlock()
}

// replyNow writes a reply at once, for the connect phase, when nothing else
// is queued and the connection may be closed right after.
func (s *session) replyNow(id uint64, result any, e *Error) {
	msg, _ := json.Marshal(reply{ID: id, Result: result, Error: e})
	s.writeNow(msg)
}

// closeErr sends the disconnect push (best effort, bounded) and returns the
// error that makes websocket's Open close with code.
func (s *session) closeErr(code websocket.StatusCode, reason string) error {
	s.writeNow(disconnectMessage(code, reason))
	return &websocket.CloseError{Code: code, Reason: reason}
}

// writeNow writes msg past the queue, waiting at most a second: for what the
// connection says just before it closes.
func (s *session) writeNow(msg []byte) {
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.c.Write(wctx, websocket.MessageText, msg)
	cancel()
}
