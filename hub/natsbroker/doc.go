// Package natsbroker is a [hub.Broker] on NATS JetStream: rooms that several
// hub processes share, with history that survives restarts.
//
// The smallest use embeds a nats-server in the process, with no network
// listener, and puts a hub on it:
//
//	srv, err := natsbroker.StartServer(natsbroker.ServerOptions{Dir: "data/nats"})
//	...
//	defer srv.Shutdown()
//	nc, err := srv.Connect() // in process, no socket
//	...
//	defer nc.Close()
//	b, err := natsbroker.New(ctx, nc, natsbroker.Options{})
//	...
//	defer b.Close()
//	h := hub.New(hub.Options{Broker: b})
//
// With an existing NATS system, Connect(url) gives the connection instead.
//
// # Rooms, offsets and live delivery
//
// All rooms are subjects of one stream (Options.Stream, "DUPLEX"): a room is
// <prefix>.r.<token>, where the token is the room's name with every byte but
// ASCII letters, digits and '-' written as _XX, so that any UTF-8 name is one
// valid subject token and "lobby" stays readable. A publication's offset is
// its stream sequence: rooms share that sequence, so a room's offsets
// increase but are not contiguous. History is bounded per room by count
// (MaxMsgsPerSubject, Options.HistorySize) and for all by age (MaxAge,
// Options.HistoryTTL). A publish key is the message's Nats-Msg-Id, scoped to
// the room and hashed; the stream's duplicate window (Options.
// IdempotencyWindow, at most the history's age) is the idempotency window.
//
// Live delivery uses the stream's RePublish: once a message is stored, the
// stream leader sends a copy to <prefix>.ev.<token>.p.<incarnation> with the
// headers Nats-Sequence (the offset), Nats-Time-Stamp and
// Nats-Last-Sequence. A node subscribes to <prefix>.ev.<token>.> only while
// it has a subscriber for the room, so a message goes only to the nodes that
// want it; join and leave events travel on the same subjects, so one
// subscription delivers a room's events in order.
//
// Nats-Last-Sequence is the room's Publication.Prev. In nats-server 2.15.2,
// stream.go processJetStreamMsg holds the stream's lock for the whole store
// (stream.go:6519) and, before storing, reads "last sequence for this exact
// subject" with store.LoadLastMsg(subject) (stream.go:7329-7334); the store
// follows (stream.go:7380) and the republished headers carry that value
// (stream.go:7459-7486). So it is the previous message stored on the same
// subject, 0 when there is none, whatever the other rooms do and whichever
// node published; TestRePublishLastSequenceIsPerSubject shows it on a raw
// stream. This is the design the issue proposed, and it holds: any node
// tells a missed message from the chain with no coordination between
// publishers. Two limits, both handled: RePublish is plain NATS, at most
// once, sent by the stream leader only (stream.go:7327), so a message can be
// lost on the way (a reconnect, a slow consumer, a leader change): the
// hub sees Prev not chain and reads the gap from History, and after a
// reconnect the broker itself reads what its rooms missed. And the header
// names the previous message still stored, not the previous one published:
// once a room's messages are all purged or aged out, the next one says 0,
// which is why the recovery rule below cannot always vouch for a room
// whose whole history has aged out.
//
// # Epoch
//
// The epoch names one incarnation of the stream: a hash of the stream's
// name, a random id the broker draws when it creates the stream (kept in
// the stream's metadata and in its RePublish destination), and the stream's
// creation time, which nats-server keeps across restarts (jetstream.go:1606,
// from the stored configuration) and sets anew when the stream is created
// again; nats-server itself tells a recreated stream by that time
// (stream.go:1356, identity()). A stream deleted and made again, by an
// operator or by this broker on the next publish after it vanished, so has
// a new epoch, and offsets that start over cannot be mistaken for old ones.
// Every live message names the incarnation that stored it in its subject: a
// node that sees a new one reads the stream's information before
// delivering, and drops what an old incarnation sent on its way out.
//
// The epoch is the stream's, shared by its rooms. A room's own loss of
// history does not change it: trimming is handled by the rule below, and a
// purge (Broker.Purge) first appends a purge marker to the room (a message
// with the header Duplex-Purge) and then purges the room's subject below it,
// so that the rule refuses every position from before the marker.
//
// # The recovery rule
//
// History with Since = {X, E} returns the publications after X only when the
// stream can vouch that none of the room's messages after X was removed;
// otherwise hub.ErrUnrecoverable. The rule:
//
//  1. E is the current epoch, and X is at most the stream's last sequence.
//  2. No purge marker of the room lies after X (the read sees the first
//     message after X, and every one it returns).
//  3. Either (a) some message of the room with sequence at most X is still
//     stored, or (b) the room holds fewer messages than its count limit and
//     X+1 >= the stream's first sequence.
//
// Why it is sound. The stream denies deletes (DenyDelete), so messages leave
// a room only as a prefix of it: MaxAge removes a prefix of the whole stream
// (filestore.go:7456 walks from the first message and stops at the first one
// not expired; the same on recovery, filestore.go:2797-2850), the count limit
// removes a room's oldest, and Purge removes the room's messages below its
// marker. Hence (a): if a message at or before X is still stored, nothing
// after X was removed. For (b): a message removed by the count limit had,
// when it was removed, a full room of newer messages after it; if the room
// now holds fewer, one of those was removed since, by age (then everything
// up to it, and so every message removed by count, lies below the stream's
// first sequence) or by a purge (then it lies below a marker, and X lies
// past the room's markers by 2). So with (b) every removed message of the
// room is at most X. For 2 the read needs to see only the first message
// after X: a purge removes everything below its marker, so the room's latest
// marker is its first stored message. If Purge fails after appending its
// marker (it returns the error), run it again: until then the marker may
// sit inside the room, where a read that stops short of it does not see it;
// what such a read returns are still the room's publications in order, and
// the hub meets the marker at the next break of the chain. Removal only grows, so the broker checks 3 after its
// read, on a fresh view of the stream: what it finds vouched for then was
// vouched for during the read. A read in several batches starts each batch
// at the last message of the previous one and requires it still there,
// so the batches join without a hole; the epoch is read before and after.
//
// What it means for positions:
//
//   - A position at a publication still stored always recovers.
//   - An empty room's position is the stream's last sequence: the room has
//     nothing up to there, and a client that comes back recovers what came
//     since, unless something after that position aged out meanwhile. Since
//     offset 0 (a fresh stream) recovers until the stream first drops a
//     message.
//   - A room that is full (HistorySize messages) and no longer holds X:
//     refused, even when the next message after X is still there, because
//     with offsets that skip the broker cannot tell X's successor from a
//     later one. The memory broker recovers that case; the difference only
//     shows when a client missed a whole room's worth of history.
//   - A room whose every message aged out, or the messages after X aged out:
//     refused unless the stream's first sequence proves nothing after X was
//     removed. Live subscribers of a room idle for longer than HistoryTTL are
//     reset (4010) at its next publication and told on return that they
//     cannot recover, though they may have missed nothing: the stream no
//     longer knows.
//
// A publication returned after Since carries Prev = X for the first one and
// the previous stored message for the others, so that the hub's chain check
// joins history to live delivery. Latest is the room's last stored message
// (a purge marker included), or for an empty room the stream's last
// sequence.
//
// History reads with direct gets ($JS.API.DIRECT.GET, AllowDirect): a batch
// of a room's messages from a sequence on, answered from one consistent view
// of the stream (stream.go:6323-6440, under the stream's isolation lock),
// with the count of further matches in the end-of-batch status. It needs no
// consumer on the server and one request for a recovery; an ordered consumer
// would take a consumer's creation, its deletion and a fetch for the same
// read. Reverse reads forward to the room's end and keeps the newest.
//
// # Presence
//
// Presence is a second stream, Stream+"_PRESENCE", kept in memory, used as a
// key-value store with a TTL (see presence.go): an entry per client and one
// per user, refreshed by their node every PresenceTTL/3, purged on leave.
// Counts are two direct gets of one message each, whatever the room's size.
// Consistency: joins and leaves are seen at once by Presence and
// PresenceStats on every node, and reach subscribers as events within a
// message's trip; a node that dies leaves its clients listed for up to
// PresenceTTL (60s by default), with no leave event; a leave racing with a
// join of the same user on another node may drop the user from the count
// until the next refresh (PresenceTTL/3).
//
// # Not yet
//
// Clustering (routes, R3, and direct gets answered by a lagging replica),
// the cmd/duplex flags, and the fault tests (kill -9, Toxiproxy) come later;
// see issue 11.
package natsbroker
