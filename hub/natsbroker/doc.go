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
// Several processes form a cluster of embedded servers by routes; see
// Clustering.
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
//  3. Either (a) X itself is still stored (a message of the room), or (b)
//     the room holds fewer messages than its count limit and X+1 >= the
//     stream's first sequence.
//
// Why it is sound. The stream denies deletes (DenyDelete), so messages leave
// a room only as a prefix of it: MaxAge removes a prefix of the whole stream
// (filestore.go:7456 walks from the first message and stops at the first one
// not expired; the same on recovery, filestore.go:2797-2850), the count limit
// removes a room's oldest, and Purge removes the room's messages below its
// marker. Hence (a): if X (or any message before it) is still stored, nothing
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
// read. Reverse reads forward to the room's end and keeps the newest. In a
// cluster a direct get may be answered by a replica that lags; the next
// section says how the read stays exact.
//
// # Clustering
//
// Three duplex processes, each with an embedded server, make a cluster:
// every node lists every node's route address, itself included, and has a
// Name and a Dir of its own. On one machine:
//
//	routes := []string{"127.0.0.1:6222", "127.0.0.1:6223", "127.0.0.1:6224"}
//	srv, err := natsbroker.StartServer(natsbroker.ServerOptions{
//		Dir: "data/n1", Name: "n1",
//		Cluster: "duplex", ClusterListen: routes[0], Routes: routes,
//	})
//	...
//	b, err := natsbroker.New(ctx, nc, natsbroker.Options{Replicas: 3})
//
// and the same with n2 on routes[1] and n3 on routes[2]. StartServer returns
// once the node has joined the cluster's JetStream (a meta leader elected,
// this node current with it), which takes a quorum, 2 of the 3: start them
// together (ServerOptions.ClusterTimeout, 60s by default, bounds the wait).
// A node of a cluster listens for NATS clients on 127.0.0.1 only, unless
// Listen says otherwise: nats-server starts its routes only once a client
// listener is up (route.go:2881-2889 waits for the accept loop, which
// DontListen skips: server.go:2601), and that listener is not advertised.
// JetStream sizes its first quorum by the number of routes listed
// (raft.go:409-449), hence every node listed everywhere.
//
// All nodes call New at once: JetStream's meta leader creates the rooms'
// stream once and answers the other creations "name already in use", their
// configurations differing by the random incarnation id
// (jetstream_cluster.go:11052-11062); they adopt the stream made, and every
// node computes the same epoch from it (the creation time is the stream
// assignment's, kept by updates and leader changes:
// jetstream_cluster.go:11102-11106, 7028). New refuses a stream whose
// replicas (or storage) differ from what it asks for, with both numbers in
// the error, rather than rewrite the stream node after node; it does bring
// the limits (HistorySize, HistoryTTL, IdempotencyWindow) to its options.
//
// What R3 (Options.Replicas: 3) gives here. A publish is acknowledged once
// a majority of the replicas has it in their RAFT log, so an acknowledged
// publication survives the loss of any one node, and history reads keep
// working on the two left: the stream elects a new leader among them, and
// a node that comes back on its directory catches up from them. While a
// new leader is elected, Publish waits for it (within its context, or
// Options.Timeout when that has no deadline): a publish that nothing took
// ("no responders") is sent again, and so is a keyed one left unanswered
// for a second (it reached a leader as it stepped down), since the stream
// stores a key once; a publish without a key whose acknowledgement was
// lost fails, and is stored once if retried with a key (the stream's
// duplicate window). A leader killed outright is replaced only after an
// election timeout (4 to 9s, raft.go:317-318), which may outlast a
// Publish's context: it fails, and the hub's client retries. With
// two nodes lost the stream has no quorum: publishes and history reads
// fail (the hub's publishers get an error, nothing is lost silently) until
// one returns. R1 in a cluster keeps each message on one node: its loss
// stops the rooms until it returns, and loses them with its disk.
// Positions do not change with the leader: the stream sequence and the
// epoch are the same on every replica.
//
// Live delivery in a cluster: the stream's leader republishes a stored
// message (only the leader does: stream.go:7327), and NATS routes carry it
// only towards the nodes that subscribed to the room's event subjects, as
// above; a node with no subscriber for the room gets no live copy (with
// R3 it still stores every message as a replica, by RAFT: that is
// replication, not delivery). A leader change loses the republished
// messages in flight; a node that misses one sees the next one's Prev not
// chain and reads the gap from history.
//
// # History in a cluster
//
// History must read its writes: a client that got offset X live, or a
// publisher acknowledged at X, asks for what follows X and must not be
// told that nothing does when something did. Direct gets do not give that
// in a cluster. In nats-server 2.15.2:
//
//   - A direct get goes to a queue group, _sys_ (stream.go:5289-5312,
//     733), that holds the leader and, from a few seconds after a leader
//     is elected, every follower that has applied 90% of what the leader
//     committed (jetstream_cluster.go:4557-4560 ticks every 2s, 4775-4781,
//     4798-4822); a follower, once in, stays in (it leaves only when
//     AllowDirect is turned off: stream.go:2883-2888). A request goes to
//     any member, the local one no more than another (client.go:
//     5598-5708), and a follower applies an entry after the leader
//     acknowledged it.
//     TestClusterHistoryReadsItsWrites sees a direct get miss a publication
//     acknowledged just before in a fifth to a half of its tries, on one
//     machine.
//   - A direct get cannot be pinned to the leader, nor told "at least up
//     to sequence S": its request (JSApiMsgGetRequest,
//     jetstream_api.go:825-847) has seq, next_by_subj, last_by_subj,
//     batch, max_bytes, start_time, multi_last, up_to_seq, up_to_time and
//     no_hdr; up_to_seq and up_to_time are upper bounds, used only by
//     multi_last reads (stream.go:6239), and nothing is a lower bound.
//   - The stream's own message get ($JS.API.STREAM.MSG.GET, used when
//     AllowDirect is off) is answered by the stream's leader only
//     (jetstream_api.go:3915-3960), but one message per request: it has
//     no batches (jetstream_api.go:3987-3992). The leader is the raft
//     node in complete leader state (jetstream_cluster.go:1619,
//     raft.go:2178-2183), which a new leader reaches only after it has
//     applied every entry of its log as of its election (raft.go:6315-6321,
//     1601-1613): what its predecessor acknowledged, it has.
//   - The stream's information ($JS.API.STREAM.INFO) comes from the
//     leader, but also from every member that believes the group has no
//     leader, and, for the first 10s of its raft node (after a restart
//     too), from the group's preferred member, each with its own state
//     (jetstream_api.go:2100-2134). Only the leader's answer carries
//     LeaderSince (set and cleared with the complete leader state:
//     raft.go:1603-1613, 6227-6230; reported at
//     jetstream_cluster.go:14075-14076): the broker takes that one, waits
//     250ms for it after another, and asks again when it did not come.
//
// So the broker keeps AllowDirect (bulk reads from any replica, which
// spreads the load) and checks every read against the leader:
//
//  1. Before the read, the leader's last message of the room (a message
//     get, last_by_subj): the anchor.
//  2. The read with direct gets, in batches. Whatever replica answers a
//     batch, it is a run of the room with no hole (a replica's store, like
//     the leader's, loses a room's messages only as a prefix), and batches
//     join as above. If it ends before the anchor, without having stopped
//     on its limit, the replica lagged: the rest is read from the leader,
//     message by message, joined to what was read.
//  3. After the read, the leader's first message of the room from X on (a
//     message get, next_by_subj): it must be the first message read. A
//     replica that still holds what the leader no longer has (age trimming
//     runs on each replica's own clock: filestore.go:7426-7440), or that
//     has not yet seen a purge the leader applied, disagrees; the whole
//     read is then made again from the leader. A purge marker there,
//     after X, is a purge since the read: the answer is hub.ErrUnrecoverable.
//  4. The recovery rule's checks (epoch, first sequence, the room's count)
//     on the leader's information, read after the read.
//
// The read is then as fresh as the leader at step 1 and starts where the
// leader's room starts: everything acknowledged before History was called
// is in it. TestHistoryCheckedAgainstLeader puts a replica that lags (its
// tail, a purge, the start of the room) in place of the direct gets of one
// server, every time; without step 2 or step 3 its reads come out short.
// A read costs the same five requests as on one server, and a lagging
// replica one leader request per message it lacks (the broker counts
// these fallbacks). An empty room's position is the leader's last
// sequence. A request lost in an election (no member answers) costs an
// attempt's timeout, 2s; an answer "no leader" is asked again every 100ms
// for as long as the caller's context allows.
//
// One limit, RAFT's own: a leader cut off from the other replicas takes
// 10 to 20s to notice that it lost its quorum and step down (raft.go:
// 3669-3673, 322-323). Until then it still answers as leader to the
// clients that reach it, from a state that no longer grows: publishes
// there fail (it cannot commit), but a read there may miss what the new
// leader, on the other side, acknowledged.
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
// In a cluster the presence stream has Options.PresenceReplicas (Replicas
// by default) replicas, in memory: with R3 it survives the loss of a node
// (with R1, the node that holds it takes the whole cluster's presence with
// it, until the next refreshes write it again). Presence and
// PresenceStats read with direct gets from any replica, so a join or leave
// made through another node shows within the replication delay (about a
// millisecond on one machine, TestClusterPresence) rather than at once; a
// leave asks the leader whether the user has clients left, so that it
// does not count the client it has just removed. Join and leave events
// reach the other nodes' subscribers as plain NATS messages, by routes.
// The entries of a node that dies stay until PresenceTTL, as above.
//
// # Network faults
//
// faults_test.go puts Toxiproxy between a node and NATS, and between
// clients and a node: latency, a dropped connection, a partition (the
// connection closed, new ones refused) and a blackhole (the connection up,
// nothing through), each healed. A node cut off from NATS refuses
// publishes with ErrNotConnected and is not Ready once its NATS client
// has noticed; a blackhole is noticed only by the client's pings, hence
// Connect's ping interval (seconds, not the client's default minutes).
// Publishers that retry with their key store each publication once;
// after the heal the node catches up (catchUp, then the hub's gap repair)
// and every subscriber holds every publication once, in order.
//
// # Restarts
//
// nats-server's Shutdown hands every RAFT group the server leads to a
// healthy peer first (server.go:2628, raft.go StepDown), so a server
// stopped cleanly costs no election timeout, where one killed (kill -9)
// costs 4 to 9s. A host program that serves clients does better still
// with Server.HandOver when it begins to shut down, before it lets its
// clients go: they reconnect to other nodes and find the streams led
// there. A node started again on its directory joins the cluster before
// its replicas have caught up; Broker.CaughtUp says when they have, which
// is when a rolling restart may stop the next node (cmd/duplex's /readyz
// waits for it). nats-server's health check alone (Server.Current) says
// current earlier, while a replica still lacks part of the stream.
// cmd/duplex's TestRollingRestart and TestKillNodeMidStream run both on
// real processes.
//
// # Not yet
//
// A partition between NATS servers (routes through Toxiproxy, JetStream in
// the minority), route TLS and authentication for clusters across
// machines; see issue 11.
package natsbroker
