// duplex.js: the JavaScript client of the Duplex hub, wire protocol version 1
// (JSON), described in hub/PROTOCOL.md. One ES module, no dependencies, no
// build step. It runs in browsers, and in Node 20+ when given a WebSocket
// constructor (the npm "ws" package's): new Client(url, { WebSocket }).
//
//	import { Client } from "./duplex.js";
//	const client = new Client("wss://example.com/chat/hub", { data: { name: "ana" } });
//	client.on("state", (state, info) => console.log(state, info));
//	const room = client.room("lobby", { recent: 50, presence: true });
//	room.on("publication", (pub) => console.log(pub.offset, pub.data));
//	room.on("subscribed", ({ recovered, reset }) => { if (recovered === false) console.log("gap"); });
//	const position = await room.publish({ text: "hi" }, { key: randomKey() });
//
// What it does for the application:
//   - one WebSocket at a time, reconnected with exponential backoff and full
//     jitter, except after the closes that say not to (4000, 4001, or a
//     disconnect push with reconnect: false); after 1012 it waits a little
//     longer first;
//   - after a reconnect it sends connect again, then subscribes every room
//     again with since = the room's last position, so that the server sends
//     exactly what was missed, or says it cannot (recovered: false);
//   - it drops a publication whose offset is not above the room's last one in
//     the same epoch, so that each publication reaches the application once,
//     in order;
//   - commands are matched to replies by id; those in flight when the
//     connection drops are rejected, except a publish with a key, which is
//     sent again (same key) after the reconnect.

/** The subprotocol offered in Sec-WebSocket-Protocol. */
export const PROTOCOL = "duplex.v1.json";

const OPEN = 1; // WebSocket.OPEN, the same in browsers, ws and test fakes

/**
 * An error reply from the server ({code, message} as in PROTOCOL.md: 400,
 * 401, 403, 409, 410, 413, 429, 503), or a local failure with code 0: the
 * client is not connected, the connection was lost before the reply, the
 * client was closed.
 */
export class DuplexError extends Error {
	/**
	 * @param {number} code
	 * @param {string} message
	 */
	constructor(code, message) {
		super(message);
		this.name = "DuplexError";
		this.code = code;
	}
}

/**
 * backoff returns how long to wait before the next connection attempt, in ms:
 * a random time between 0 and min(maxDelay, minDelay * 2^failures) ("full
 * jitter"), so that the clients of a server that restarts do not all come
 * back at once.
 *
 * @param {number} failures attempts that failed since the last connect
 * @param {number} minDelay
 * @param {number} maxDelay
 * @param {() => number} [random] a number in [0, 1)
 */
export function backoff(failures, minDelay, maxDelay, random = Math.random) {
	const ceiling = Math.min(maxDelay, minDelay * Math.pow(2, Math.min(failures, 30)));
	return Math.floor(random() * ceiling);
}

/**
 * isDuplicate says whether a publication was already seen by a room whose
 * last position is `last`: same epoch, offset not above. An offset means
 * nothing outside its epoch, so a publication of another epoch is never a
 * duplicate.
 *
 * @param {{offset: number, epoch: string} | null} last
 * @param {{offset: number, epoch: string}} pub
 */
export function isDuplicate(last, pub) {
	return last !== null && pub.epoch === last.epoch && pub.offset <= last.offset;
}

/**
 * randomKey returns a fresh idempotency key for publish: 128 random bits in
 * hex. crypto.getRandomValues works in insecure contexts too, unlike
 * crypto.randomUUID.
 */
export function randomKey() {
	const bytes = new Uint8Array(16);
	globalThis.crypto.getRandomValues(bytes);
	let key = "";
	for (const b of bytes) {
		key += b.toString(16).padStart(2, "0");
	}
	return key;
}

// listeners holds each emitter's listeners, out of reach of the application
// (which can only add and remove its own).
const listeners = new WeakMap();

function emit(target, type, ...args) {
	const byType = listeners.get(target);
	const set = byType && byType.get(type);
	if (!set) {
		return;
	}
	for (const fn of [...set]) {
		try {
			fn.apply(target, args);
		} catch (error) {
			// One faulty listener must not break the client or the others.
			if (typeof globalThis.reportError === "function") {
				globalThis.reportError(error);
			} else {
				console.error(error);
			}
		}
	}
}

class Emitter {
	/**
	 * on adds a listener and returns a function that removes it.
	 *
	 * @param {string} type
	 * @param {Function} fn
	 * @returns {() => void}
	 */
	on(type, fn) {
		if (typeof fn !== "function") {
			throw new TypeError("duplex: listener is not a function");
		}
		let byType = listeners.get(this);
		if (!byType) {
			byType = new Map();
			listeners.set(this, byType);
		}
		let set = byType.get(type);
		if (!set) {
			set = new Set();
			byType.set(type, set);
		}
		set.add(fn);
		return () => this.off(type, fn);
	}

	/**
	 * off removes a listener added by on.
	 *
	 * @param {string} type
	 * @param {Function} fn
	 */
	off(type, fn) {
		const byType = listeners.get(this);
		const set = byType && byType.get(type);
		if (set) {
			set.delete(fn);
		}
	}
}

function copyPosition(p) {
	return p ? { offset: p.offset, epoch: p.epoch } : null;
}

function validPosition(p) {
	return p !== null && typeof p === "object" && typeof p.offset === "number" && Number.isFinite(p.offset) &&
		typeof p.epoch === "string";
}

// publication normalizes a pub push, or an entry of a reply's publications,
// into what the application receives; null when it has no usable position.
function publication(room, p) {
	if (!validPosition(p)) {
		return null;
	}
	const pub = { room, offset: p.offset, epoch: p.epoch, time: p.time, data: p.data };
	if (p.from && typeof p.from === "object") {
		pub.from = { client: p.from.client, user: p.from.user };
		if (p.from.info !== undefined) {
			pub.from.info = p.from.info;
		}
	}
	return pub;
}

/**
 * A subscription to one room, made by client.room(name, options). Events:
 *
 *   "subscribed"  ({recovered, reset, position, publications}) once per
 *                 successful subscribe (the first, and each one after a
 *                 reconnect), before the publications of the reply are
 *                 delivered as "publication" events:
 *                   recovered: undefined on a subscribe without since (the
 *                     first one), true when everything missed follows,
 *                     false when publications were missed for good;
 *                   reset: true when recovered is false and the room asked
 *                     for recent publications: those that follow are a
 *                     fresh start (a page clears its list first);
 *                   position: the room's position where live delivery starts;
 *                   publications: the array about to be delivered.
 *   "publication" (pub) each publication once, in order:
 *                 {room, offset, epoch, time, from: {client, user, info}?, data}.
 *   "epoch"       ({previous, position}) a live publication came in another
 *                 epoch than the room's last position: the server lost or
 *                 reset the room's history, publications may have been lost
 *                 (treat like recovered: false).
 *   "join", "leave" (client) presence events {client, user, info}, when
 *                 subscribed with presence: true.
 *   "presence"    (members) the room's members, a Map from client id to
 *                 {client, user, info}, after each change (presence: true).
 *   "error"       (DuplexError) the server refused the subscribe (400, 403,
 *                 409...) or the presence list; the room is then "failed".
 */
export class Room extends Emitter {
	#r;

	/** @param {object} record the client's state for this room */
	constructor(record) {
		super();
		this.#r = record;
	}

	/** The room's name. */
	get name() {
		return this.#r.name;
	}

	/**
	 * "pending" (waiting for a connection), "subscribing", "subscribed",
	 * "failed" (refused by the server) or "unsubscribed".
	 */
	get state() {
		return this.#r.state;
	}

	/** The last position seen in the room, {offset, epoch}, or null. */
	get position() {
		return copyPosition(this.#r.position);
	}

	/** The room's members (presence: true), a Map from client id to {client, user, info}. */
	get members() {
		return new Map(this.#r.members);
	}

	/**
	 * publish sends data (any JSON value) to the room; see Client.publish.
	 *
	 * @param {*} data
	 * @param {{key?: string}} [options]
	 * @returns {Promise<{offset: number, epoch: string}>}
	 */
	publish(data, options) {
		return this.#r.client.publish(this.#r.name, data, options);
	}

	/**
	 * history reads the room's history; see Client.history.
	 *
	 * @param {{since?: {offset: number, epoch: string}, limit?: number, reverse?: boolean}} [options]
	 */
	history(options) {
		return this.#r.client.history(this.#r.name, options);
	}

	/**
	 * presence asks for the room's present clients; see Client.presence.
	 *
	 * @param {{statsOnly?: boolean}} [options]
	 */
	presence(options) {
		return this.#r.client.presence(this.#r.name, options);
	}

	/**
	 * unsubscribe leaves the room: no event of it reaches the application
	 * after this call. The promise resolves when the server has replied, or
	 * at once when there was nothing to tell it; it never rejects.
	 *
	 * @returns {Promise<void>}
	 */
	unsubscribe() {
		return this.#r.unsubscribe();
	}
}

/**
 * A client of the hub: one WebSocket at a time, reconnected as needed.
 * It starts connecting right after the constructor returns (in a
 * microtask, so that listeners added just after it see every event).
 *
 * Options:
 *   token      string, or function returning a string or a promise of one,
 *              called before each connect (for credentials that expire);
 *   data       any JSON value sent with connect (e.g. {name});
 *   WebSocket  the WebSocket constructor (default globalThis.WebSocket);
 *   minDelay   the first reconnection waits up to this, ms (1000);
 *   maxDelay   no reconnection waits longer than this, ms (30000);
 *   restartDelay  added before reconnecting after 1012 "service restart",
 *              ms (2000);
 *   publishRetryWindow  a keyed publish first sent longer ago than this is
 *              not sent again (the server's idempotency window is 2
 *              minutes by default), ms (100000).
 *
 * Events:
 *   "state"  (state, info) on each change, and on each new attempt:
 *     "connecting"   {attempt}
 *     "connected"    {client, user, version}: the connect result
 *     "disconnected" {code, reason, retryIn, retryAt}: it reconnects in
 *                    retryIn ms (at retryAt, ms since the Unix epoch)
 *     "closed"       {code, reason}: it will not reconnect by itself (close(),
 *                    4000, 4001, or a disconnect push with reconnect:
 *                    false); connect() starts again.
 *   "error"  (Error) something the server sent could not be understood.
 */
export class Client extends Emitter {
	#url;
	#options;
	#WebSocket;
	#minDelay;
	#maxDelay;
	#restartDelay;
	#publishRetryWindow;

	#state = "connecting";
	#socket = null; // the current WebSocket, or null
	#conn = 0; // counts sockets, so that late events of an old one are ignored
	#connected = false; // the current socket's connect succeeded
	#failures = 0; // attempts since the last successful connect
	#retryTimer = null;
	#attempt = 0;
	#nextId = 1;
	#inflight = new Map(); // id -> entry, in send order
	#queue = []; // entries waiting for a connected socket
	#rooms = new Map(); // name -> record
	#clientId = "";
	#user = "";
	#ownIds = new Set();
	#disconnectPush = null; // the last disconnect push of the current socket
	#connectError = null; // the error reply to the current socket's connect

	/**
	 * @param {string | URL} url the hub's WebSocket URL (ws: or wss:)
	 * @param {object} [options]
	 */
	constructor(url, options = {}) {
		super();
		this.#url = String(url);
		this.#options = options;
		this.#WebSocket = options.WebSocket || globalThis.WebSocket;
		if (typeof this.#WebSocket !== "function") {
			throw new TypeError("duplex: no WebSocket implementation; pass one as options.WebSocket");
		}
		this.#minDelay = options.minDelay ?? 1000;
		this.#maxDelay = options.maxDelay ?? 30000;
		this.#restartDelay = options.restartDelay ?? 2000;
		this.#publishRetryWindow = options.publishRetryWindow ?? 100000;
		queueMicrotask(() => {
			if (this.#state === "connecting" && this.#socket === null && this.#conn === 0) {
				this.#open();
			}
		});
	}

	/** "connecting", "connected", "disconnected" or "closed". */
	get state() {
		return this.#state;
	}

	/** The current connection's client id (the connect result's), or "". */
	get id() {
		return this.#clientId;
	}

	/** The identity the server gave the current connection, or "". */
	get user() {
		return this.#user;
	}

	/**
	 * isOwn says whether a publication was made by this client, on its
	 * current connection or on an earlier one (its client id changes with
	 * each connection).
	 *
	 * @param {{from?: {client?: string}}} pub
	 */
	isOwn(pub) {
		return Boolean(pub && pub.from && this.#ownIds.has(pub.from.client));
	}

	/**
	 * connect connects now: after close(), after a close that stops the
	 * reconnection (4001: set a new token first), or to skip the wait of a
	 * pending reconnection (the network came back). It does nothing while
	 * connecting or connected.
	 */
	connect() {
		if (this.#socket !== null) {
			return;
		}
		this.#open();
	}

	/**
	 * close closes the connection for good (until connect()): state
	 * "closed", every command waiting for a reply is rejected. The rooms stay,
	 * so that connect() subscribes them again and recovers them.
	 */
	close() {
		this.#cancelRetry();
		const socket = this.#socket;
		this.#socket = null;
		this.#connected = false;
		this.#conn++;
		if (socket !== null) {
			try {
				socket.close(1000, "");
			} catch {
				// closing a socket that is already closing
			}
		}
		this.#dropCommands(false, new DuplexError(0, "duplex: client closed"));
		this.#detachRooms();
		if (this.#state !== "closed") {
			this.#setState("closed", { code: 1000, reason: "closed by the client" });
		}
	}

	/**
	 * room subscribes to a room and returns it. Subscribing to a room that
	 * this client already has throws: unsubscribe it first.
	 *
	 * @param {string} name 1 to 256 bytes of UTF-8 without control characters
	 * @param {{recent?: number, presence?: boolean}} [options] recent: on the
	 *   first subscribe, and when recovery fails, deliver up to this many of
	 *   the room's latest publications; presence: push join and leave, keep
	 *   room.members
	 * @returns {Room}
	 */
	room(name, options = {}) {
		if (typeof name !== "string" || name === "") {
			throw new TypeError("duplex: a room name is a non-empty string");
		}
		if (this.#rooms.has(name)) {
			throw new Error("duplex: already subscribed to room " + JSON.stringify(name));
		}
		const record = {
			client: this,
			name,
			recent: Math.max(0, Math.floor(Number(options.recent) || 0)),
			presence: Boolean(options.presence),
			state: "pending",
			position: null, // the last position seen
			buffer: null, // pubs that came while the subscribe was in flight
			members: new Map(),
			presenceEvents: null, // join and leave seen while the presence list was asked
			failures: 0, // subscribe errors 429 and 503 in a row
			retryTimer: null, // the subscribe again after 429 or 503
			room: null,
			unsubscribe: null,
		};
		record.room = new Room(record);
		record.unsubscribe = () => this.#unsubscribe(record);
		this.#rooms.set(name, record);
		if (this.#connected) {
			this.#subscribe(record);
		}
		return record.room;
	}

	/**
	 * publish sends data (any JSON value) to a room, subscribed or not, and
	 * resolves to its position {offset, epoch}. With a key, a publish that
	 * was in flight (or not yet sent) when the connection dropped is sent
	 * again with the same key after the reconnect, so that the server appends
	 * it once; it is rejected only by an error reply, by close(), or when it
	 * was first sent longer than publishRetryWindow ago. Without a key it is
	 * rejected when the connection drops before the reply (it may or may not
	 * have been published) or when the client is not connected.
	 *
	 * @param {string} room
	 * @param {*} data
	 * @param {{key?: string}} [options]
	 * @returns {Promise<{offset: number, epoch: string}>}
	 */
	publish(room, data, options = {}) {
		const fields = { room, data: data === undefined ? null : data };
		const keyed = typeof options.key === "string" && options.key !== "";
		if (keyed) {
			fields.key = options.key;
		}
		return this.#command("publish", fields, keyed).then((result) => {
			if (!result || !validPosition(result.position)) {
				throw new DuplexError(0, "duplex: publish result without a position");
			}
			return copyPosition(result.position);
		});
	}

	/**
	 * history reads a room's history: publications after since (or from the
	 * oldest kept, or the newest with reverse), at most limit. Resolves to
	 * {position, publications}; rejects with 410 when the server cannot vouch
	 * for since.
	 *
	 * @param {string} room
	 * @param {{since?: {offset: number, epoch: string}, limit?: number, reverse?: boolean}} [options]
	 */
	history(room, options = {}) {
		const fields = { room };
		if (options.since) {
			fields.since = copyPosition(options.since);
		}
		if (options.limit !== undefined) {
			fields.limit = options.limit;
		}
		if (options.reverse) {
			fields.reverse = true;
		}
		return this.#command("history", fields, false).then((result) => {
			const publications = [];
			for (const p of (result && Array.isArray(result.publications)) ? result.publications : []) {
				const pub = publication(room, p);
				if (pub) {
					publications.push(pub);
				}
			}
			return { position: copyPosition(result && result.position), publications };
		});
	}

	/**
	 * presence asks who is in a room: {clients: [{client, user, info}],
	 * stats: {clients, users}} (no clients with statsOnly).
	 *
	 * @param {string} room
	 * @param {{statsOnly?: boolean}} [options]
	 */
	presence(room, options = {}) {
		const fields = { room };
		if (options.statsOnly) {
			fields.stats_only = true;
		}
		return this.#command("presence", fields, false);
	}

	// ---- commands

	// #command sends a command of the application's. While connecting it
	// waits for the connect; while disconnected or closed it is rejected at
	// once, unless retry (a keyed publish), which waits for the reconnect.
	#command(op, fields, retry) {
		return new Promise((resolve, reject) => {
			const entry = { op, fields, retry, firstSentAt: 0, onResult: resolve, onError: reject, onLost: reject };
			if (this.#connected) {
				this.#transmit(entry);
			} else if (this.#state === "connecting" || (retry && this.#state === "disconnected")) {
				this.#queue.push(entry);
			} else {
				reject(new DuplexError(0, "duplex: not connected"));
			}
		});
	}

	#transmit(entry) {
		const id = this.#nextId++;
		entry.id = id;
		if (entry.firstSentAt === 0) {
			entry.firstSentAt = Date.now();
		}
		this.#inflight.set(id, entry);
		this.#write({ id, op: entry.op, ...entry.fields });
	}

	#write(message) {
		const socket = this.#socket;
		if (socket === null || socket.readyState !== OPEN) {
			return; // the close event settles what was in flight
		}
		try {
			socket.send(JSON.stringify(message));
		} catch (error) {
			emit(this, "error", error);
		}
	}

	// #dropCommands settles every command in flight or queued when a
	// connection ends: keyed publishes wait for the next one when keep,
	// the others are rejected (internal ones are forgotten: the reconnect
	// redoes them).
	#dropCommands(keep, error) {
		const entries = [...this.#inflight.values(), ...this.#queue];
		this.#inflight.clear();
		this.#queue = [];
		for (const entry of entries) {
			if (keep && entry.retry) {
				this.#queue.push(entry);
			} else {
				entry.onLost(error);
			}
		}
	}

	// ---- connection

	#setState(state, info) {
		this.#state = state;
		emit(this, "state", state, info);
	}

	#cancelRetry() {
		if (this.#retryTimer !== null) {
			clearTimeout(this.#retryTimer);
			this.#retryTimer = null;
		}
	}

	#open() {
		this.#cancelRetry();
		const conn = ++this.#conn;
		this.#connected = false;
		this.#disconnectPush = null;
		this.#connectError = null;
		this.#attempt = this.#failures + 1;
		this.#setState("connecting", { attempt: this.#attempt });
		if (conn !== this.#conn) {
			return; // a listener called close() or connect()
		}
		let socket;
		try {
			socket = new this.#WebSocket(this.#url, [PROTOCOL]);
		} catch (error) {
			// A bad URL, or a refused port: it fails like a lost connection.
			emit(this, "error", error);
			this.#lost(conn, 1006, String((error && error.message) || error));
			return;
		}
		this.#socket = socket;
		socket.onopen = () => {
			if (conn === this.#conn) {
				this.#sendConnect(conn);
			}
		};
		socket.onmessage = (event) => {
			if (conn === this.#conn) {
				this.#receive(event.data);
			}
		};
		socket.onerror = () => {
			// A close event always follows; it decides what to do.
		};
		socket.onclose = (event) => {
			if (conn === this.#conn) {
				this.#lost(conn, event.code, event.reason || "");
			}
		};
	}

	async #sendConnect(conn) {
		let token = this.#options.token;
		if (typeof token === "function") {
			try {
				token = await token();
			} catch (error) {
				emit(this, "error", error);
				token = undefined;
			}
			if (conn !== this.#conn) {
				return;
			}
		}
		const fields = {};
		if (token !== undefined && token !== null && token !== "") {
			fields.token = String(token);
		}
		if (this.#options.data !== undefined) {
			fields.data = this.#options.data;
		}
		this.#transmit({
			op: "connect",
			fields,
			retry: false,
			firstSentAt: 0,
			onResult: (result) => this.#onConnected(conn, result),
			onError: (error) => {
				// The server closes with 4001 next; remember why.
				this.#connectError = error;
			},
			onLost: () => {},
		});
	}

	#onConnected(conn, result) {
		if (conn !== this.#conn) {
			return;
		}
		this.#connected = true;
		this.#failures = 0;
		this.#clientId = result && typeof result.client === "string" ? result.client : "";
		this.#user = result && typeof result.user === "string" ? result.user : "";
		if (this.#clientId !== "") {
			this.#ownIds.add(this.#clientId);
		}
		this.#setState("connected", {
			client: this.#clientId,
			user: this.#user,
			version: result && result.version,
		});
		if (conn !== this.#conn) {
			return; // a listener closed the client
		}
		// Rooms first, in the order they were made, then what waited for the
		// connection (keyed publishes to send again, commands made while
		// connecting), in its order.
		for (const record of this.#rooms.values()) {
			if (record.state === "pending") {
				this.#subscribe(record);
			}
		}
		const queued = this.#queue;
		this.#queue = [];
		const now = Date.now();
		for (const entry of queued) {
			if (entry.retry && entry.firstSentAt !== 0 && now - entry.firstSentAt > this.#publishRetryWindow) {
				entry.onLost(new DuplexError(0,
					"duplex: publish not sent again: its first send is older than the idempotency window"));
			} else {
				this.#transmit(entry);
			}
		}
	}

	// #lost handles the end of connection conn (or the failure to open it).
	#lost(conn, code, reason) {
		if (conn !== this.#conn) {
			return;
		}
		this.#socket = null;
		this.#connected = false;
		this.#conn++; // late events of this socket are ignored
		const push = this.#disconnectPush;
		if (push && (code === 1005 || code === 1006 || code === undefined)) {
			// The close frame did not arrive, the push said it all.
			code = push.code;
			reason = push.reason;
		}
		if (this.#connectError) {
			// The refusal's reason (the authentication hook's) says more than
			// the close frame's.
			reason = this.#connectError.message;
		}
		code = typeof code === "number" ? code : 1006;
		let reconnect = code !== 4000 && code !== 4001;
		if (push && typeof push.reconnect === "boolean") {
			reconnect = push.reconnect;
		}
		this.#detachRooms();
		if (!reconnect) {
			this.#dropCommands(false, new DuplexError(0, "duplex: connection closed: " + code + " " + reason));
			this.#setState("closed", { code, reason });
			return;
		}
		this.#dropCommands(true, new DuplexError(0, "duplex: connection lost: " + code + " " + reason));
		let delay = backoff(this.#failures, this.#minDelay, this.#maxDelay);
		if (code === 1012) {
			delay += this.#restartDelay;
		}
		this.#failures = Math.min(this.#failures + 1, 30);
		this.#retryTimer = setTimeout(() => {
			this.#retryTimer = null;
			if (this.#socket === null && this.#state === "disconnected") {
				this.#open();
			}
		}, delay);
		this.#setState("disconnected", { code, reason, retryIn: delay, retryAt: Date.now() + delay });
	}

	// #detachRooms puts every live room back to "pending": the next connect
	// subscribes them again, with since.
	#detachRooms() {
		for (const record of this.#rooms.values()) {
			if (record.state === "subscribing" || record.state === "subscribed") {
				record.state = "pending";
			}
			record.buffer = null;
			record.presenceEvents = null;
			clearTimeout(record.retryTimer);
			record.retryTimer = null;
		}
	}

	// ---- messages

	#receive(text) {
		if (typeof text !== "string") {
			emit(this, "error", new Error("duplex: binary message from the server, ignored"));
			return;
		}
		let message;
		try {
			message = JSON.parse(text);
		} catch {
			emit(this, "error", new Error("duplex: a message from the server is not JSON, ignored"));
			return;
		}
		if (message === null || typeof message !== "object" || Array.isArray(message)) {
			emit(this, "error", new Error("duplex: a message from the server is not a JSON object, ignored"));
			return;
		}
		if (typeof message.push === "string") {
			this.#onPush(message);
			return;
		}
		if (typeof message.id === "number") {
			const entry = this.#inflight.get(message.id);
			if (!entry) {
				return; // not ours (a reply to a command of an older connection cannot come)
			}
			this.#inflight.delete(message.id);
			if (message.error) {
				const code = typeof message.error.code === "number" ? message.error.code : 0;
				const text = typeof message.error.message === "string" ? message.error.message : "error " + code;
				entry.onError(new DuplexError(code, text));
			} else {
				entry.onResult(message.result === undefined ? {} : message.result);
			}
		}
		// Anything else is a message of a later version: ignored.
	}

	#onPush(message) {
		switch (message.push) {
		case "pub":
			this.#onPub(message);
			break;
		case "join":
		case "leave":
			this.#onPresence(message);
			break;
		case "disconnect":
			this.#disconnectPush = {
				code: typeof message.code === "number" ? message.code : 1006,
				reason: typeof message.reason === "string" ? message.reason : "",
				reconnect: message.reconnect,
			};
			break;
		}
		// Pushes of a later version are ignored.
	}

	#onPub(message) {
		const record = this.#rooms.get(message.room);
		if (!record) {
			return; // unsubscribed
		}
		const pub = publication(record.name, message);
		if (pub === null) {
			emit(this, "error", new Error("duplex: a pub push without a valid offset and epoch, ignored"));
			return;
		}
		if (record.state === "subscribing") {
			// Sent before the subscribe's reply: sorted out with it.
			record.buffer.push(pub);
			return;
		}
		if (record.state !== "subscribed") {
			return;
		}
		this.#deliverLive(record, pub);
	}

	// #deliverLive delivers a live publication unless it is a duplicate.
	#deliverLive(record, pub) {
		const last = record.position;
		if (isDuplicate(last, pub)) {
			return;
		}
		record.position = { offset: pub.offset, epoch: pub.epoch };
		if (last !== null && last.epoch !== pub.epoch) {
			emit(record.room, "epoch", { previous: copyPosition(last), position: copyPosition(record.position) });
			if (this.#rooms.get(record.name) !== record) {
				return;
			}
		}
		emit(record.room, "publication", pub);
	}

	#onPresence(message) {
		const record = this.#rooms.get(message.room);
		if (!record || !record.presence || (record.state !== "subscribing" && record.state !== "subscribed")) {
			return;
		}
		const c = message.client;
		if (!c || typeof c !== "object" || typeof c.client !== "string") {
			return;
		}
		const member = { client: c.client, user: c.user, info: c.info };
		if (record.presenceEvents !== null) {
			record.presenceEvents.push({ type: message.push, member });
		}
		if (message.push === "join") {
			record.members.set(member.client, member);
		} else {
			record.members.delete(member.client);
		}
		emit(record.room, message.push, member);
		if (this.#rooms.get(record.name) === record) {
			emit(record.room, "presence", new Map(record.members));
		}
	}

	// ---- rooms

	#subscribe(record) {
		const conn = this.#conn;
		const fields = { room: record.name };
		const since = copyPosition(record.position);
		if (since !== null) {
			fields.since = since;
		}
		if (record.recent > 0) {
			fields.recent = record.recent;
		}
		if (record.presence) {
			fields.presence = true;
			record.presenceEvents = [];
		}
		record.state = "subscribing";
		record.buffer = [];
		this.#transmit({
			op: "subscribe",
			fields,
			retry: false,
			firstSentAt: 0,
			onResult: (result) => {
				if (conn === this.#conn && this.#rooms.get(record.name) === record) {
					this.#subscribed(record, since, result);
				}
			},
			onError: (error) => {
				if (conn === this.#conn && this.#rooms.get(record.name) === record) {
					this.#subscribeFailed(record, error);
				}
			},
			onLost: () => {},
		});
	}

	#subscribeFailed(record, error) {
		record.buffer = null;
		record.presenceEvents = null;
		if (error.code === 429 || error.code === 503) {
			// The server asks to retry later: on this connection, with backoff.
			record.state = "pending";
			const conn = this.#conn;
			const delay = backoff(record.failures, this.#minDelay, this.#maxDelay);
			record.failures = Math.min(record.failures + 1, 30);
			record.retryTimer = setTimeout(() => {
				record.retryTimer = null;
				if (conn === this.#conn && this.#connected && record.state === "pending" &&
					this.#rooms.get(record.name) === record) {
					this.#subscribe(record);
				}
			}, delay);
			return;
		}
		record.state = "failed";
		emit(record.room, "error", error);
	}

	#subscribed(record, since, result) {
		record.failures = 0;
		const recovered = since === null ? undefined : result.recovered === true;
		const reset = recovered === false && record.recent > 0;
		// What the reply brings: after since when recovered, else a fresh
		// start (the recent publications, or none).
		let last = recovered === true ? since : null;
		const publications = [];
		for (const p of Array.isArray(result.publications) ? result.publications : []) {
			const pub = publication(record.name, p);
			if (pub === null || isDuplicate(last, pub)) {
				continue;
			}
			publications.push(pub);
			last = { offset: pub.offset, epoch: pub.epoch };
		}
		// The room's last position: where live delivery starts, unless the
		// reply's publications reach further (they should not).
		const position = validPosition(result.position) ? copyPosition(result.position) : null;
		if (position !== null && (last === null || last.epoch !== position.epoch || position.offset > last.offset)) {
			last = position;
		}
		const buffered = record.buffer || [];
		record.buffer = null;
		record.position = last;
		record.state = "subscribed";
		emit(record.room, "subscribed", {
			recovered,
			reset,
			position: copyPosition(last),
			publications: publications.slice(),
		});
		for (const pub of publications) {
			if (this.#rooms.get(record.name) !== record || record.state !== "subscribed") {
				return;
			}
			emit(record.room, "publication", pub);
		}
		// Pubs pushed before the reply: those of the reply's epoch and above
		// its position are live ones; the others were in the reply or are older.
		for (const pub of buffered) {
			if (this.#rooms.get(record.name) !== record || record.state !== "subscribed") {
				return;
			}
			if (record.position === null || pub.epoch === record.position.epoch) {
				this.#deliverLive(record, pub);
			}
		}
		if (record.presence && this.#rooms.get(record.name) === record && record.state === "subscribed") {
			this.#fetchPresence(record);
		}
	}

	// #fetchPresence asks for the room's members; join and leave pushed
	// since the subscribe was sent are applied again on top of the list, in
	// order, so that the result does not depend on when the server took it.
	#fetchPresence(record) {
		const conn = this.#conn;
		if (record.presenceEvents === null) {
			record.presenceEvents = [];
		}
		this.#transmit({
			op: "presence",
			fields: { room: record.name },
			retry: false,
			firstSentAt: 0,
			onResult: (result) => {
				if (conn !== this.#conn || this.#rooms.get(record.name) !== record) {
					return;
				}
				const members = new Map();
				for (const c of (result && Array.isArray(result.clients)) ? result.clients : []) {
					if (c && typeof c.client === "string") {
						members.set(c.client, { client: c.client, user: c.user, info: c.info });
					}
				}
				for (const { type, member } of record.presenceEvents || []) {
					if (type === "join") {
						members.set(member.client, member);
					} else {
						members.delete(member.client);
					}
				}
				record.presenceEvents = null;
				record.members = members;
				emit(record.room, "presence", new Map(members));
			},
			onError: (error) => {
				if (conn === this.#conn && this.#rooms.get(record.name) === record) {
					record.presenceEvents = null;
					emit(record.room, "error", error);
				}
			},
			onLost: () => {},
		});
	}

	#unsubscribe(record) {
		if (this.#rooms.get(record.name) !== record) {
			return Promise.resolve();
		}
		this.#rooms.delete(record.name);
		const wasLive = record.state === "subscribing" || record.state === "subscribed";
		record.state = "unsubscribed";
		record.buffer = null;
		record.presenceEvents = null;
		clearTimeout(record.retryTimer);
		record.retryTimer = null;
		if (!wasLive || !this.#connected) {
			return Promise.resolve();
		}
		return new Promise((resolve) => {
			this.#transmit({
				op: "unsubscribe",
				fields: { room: record.name },
				retry: false,
				firstSentAt: 0,
				onResult: () => resolve(),
				onError: () => resolve(),
				onLost: () => resolve(),
			});
		});
	}
}
