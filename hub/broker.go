package hub

import (
	"context"
	"encoding/json"
	"errors"
)

// Broker is everything of the hub that crosses processes: a log per room
// with positions, live delivery, history and presence. A [Hub] talks to its
// rooms only through a Broker; [NewMemoryBroker] serves one process, and a
// broker on a distributed engine lets several processes share rooms.
//
// Methods may be called concurrently.
type Broker interface {
	// Publish appends m to the room's log and returns its position. When
	// m.Key is set and a publication with that key was appended to the room
	// within the broker's idempotency window, Publish appends nothing and
	// returns that publication's position.
	Publish(ctx context.Context, room string, m Message) (Position, error)

	// Subscribe starts delivering the room's events to deliver until the
	// subscription is closed. Events of one room come in log order, one at
	// a time. deliver must not block: it runs on the broker's delivery
	// path, maybe under its locks, and must not call the Broker.
	// A publication appended after Subscribe returns is delivered, unless
	// the broker loses it on the way (a distributed one may); a subscriber
	// detects that from Publication.Prev and reads the gap from History.
	Subscribe(ctx context.Context, room string, deliver func(Event)) (Subscription, error)

	// History reads the room's log; see HistoryQuery. With q.Since set it
	// returns ErrUnrecoverable when the log cannot vouch that it holds every
	// publication after Since (epoch changed, trimmed past it, or Since
	// names an offset the room never had).
	History(ctx context.Context, room string, q HistoryQuery) (History, error)

	// Join adds a client to the room's presence and delivers a join event
	// to the room's subscribers; Leave removes it and delivers a leave event.
	Join(ctx context.Context, room string, c ClientInfo) error
	Leave(ctx context.Context, room string, c ClientInfo) error

	// Presence lists the room's present clients; PresenceStats counts them
	// without listing, cheaply for large rooms.
	Presence(ctx context.Context, room string) ([]ClientInfo, error)
	PresenceStats(ctx context.Context, room string) (PresenceStats, error)

	// Close releases the broker. Subscriptions end.
	Close() error
}

// ReadyChecker is implemented by a Broker that can tell whether it is
// usable now: one on a distributed engine whose connection may be down, or
// any broker once closed. [Hub.Ready] asks it, for a readiness probe; a
// Broker that does not implement it is taken as always ready. Ready should
// answer from what the broker already knows (its connection's state), not
// with a round trip per call: probes come often.
type ReadyChecker interface {
	Ready(ctx context.Context) error
}

// Message is what a publisher hands to Broker.Publish.
type Message struct {
	Data json.RawMessage // a JSON value
	Key  string          // optional idempotency key
	From *ClientInfo     // nil for the server
}

// Subscription is a broker subscription to one room.
type Subscription interface {
	// Close stops the deliveries. Some may still be running when Close
	// returns; none starts after.
	Close() error
}

// EventKind says what an Event carries.
type EventKind uint8

const (
	EventPublication EventKind = iota + 1 // Event.Publication is set
	EventJoin                             // Event.Client joined the room
	EventLeave                            // Event.Client left the room
)

// Event is one delivery of a broker subscription.
type Event struct {
	Kind        EventKind
	Publication Publication
	Client      ClientInfo
}

// HistoryQuery selects publications of a room's log.
type HistoryQuery struct {
	// Since, when set, selects only publications after it.
	Since *Position
	// Limit is the most publications returned; 0 returns none (only the
	// room's position). A negative Limit is treated as 0.
	Limit int
	// Reverse returns the newest first (the newest Limit after Since).
	// Otherwise the oldest come first.
	Reverse bool
}

// History is the answer of Broker.History.
type History struct {
	Publications []Publication
	// Latest is the room's position when the history was read: the last
	// publication's, or offset 0 in the room's epoch when it has none.
	Latest Position
}

// PresenceStats counts a room's presence.
type PresenceStats struct {
	Clients int `json:"clients"` // connections present
	Users   int `json:"users"`   // distinct users among them
}

// ErrUnrecoverable is returned by Broker.History when the log cannot vouch
// for the publications after HistoryQuery.Since.
var ErrUnrecoverable = errors.New("hub: history cannot vouch for that position")
