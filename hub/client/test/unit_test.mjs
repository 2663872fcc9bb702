// Unit tests of duplex.js without a server: a fake WebSocket class stands in
// for the hub, so that each test decides what the server says and when.
//
// Usage: node hub/client/test/unit_test.mjs
// Prints one line per test and a JSON summary line; exits 1 when a test fails.

import { Client, DuplexError, PROTOCOL, backoff, isDuplicate, randomKey } from "../duplex.js";

// ---- the fake

class FakeWebSocket {
	static instances = [];
	static refuse = false; // the constructor throws, like a bad URL

	constructor(url, protocols) {
		if (FakeWebSocket.refuse) {
			throw new Error("refused by the test");
		}
		this.url = url;
		this.protocols = protocols;
		this.protocol = "";
		this.readyState = 0;
		this.sent = [];
		this.closedWith = null;
		this.onopen = this.onmessage = this.onclose = this.onerror = null;
		FakeWebSocket.instances.push(this);
	}

	send(text) {
		if (this.readyState !== 1) {
			throw new Error("send on a socket that is not open");
		}
		this.sent.push(JSON.parse(text));
	}

	close(code, reason) {
		if (this.readyState >= 2) {
			return;
		}
		this.readyState = 3;
		this.closedWith = { code, reason };
		setTimeout(() => this.onclose && this.onclose({ code: code ?? 1005, reason: reason ?? "" }), 0);
	}

	// Server side.
	open() {
		this.readyState = 1;
		this.protocol = PROTOCOL;
		this.onopen && this.onopen({});
	}

	push(message) {
		this.onmessage && this.onmessage({ data: JSON.stringify(message) });
	}

	raw(data) {
		this.onmessage && this.onmessage({ data });
	}

	reply(id, result) {
		this.push({ id, result });
	}

	fail(id, code, message) {
		this.push({ id, error: { code, message } });
	}

	drop(code = 1006, reason = "") {
		this.readyState = 3;
		this.onclose && this.onclose({ code, reason });
	}

	last(op) {
		for (let i = this.sent.length - 1; i >= 0; i--) {
			if (this.sent[i].op === op) {
				return this.sent[i];
			}
		}
		return undefined;
	}

	ops() {
		return this.sent.map((m) => m.op);
	}
}

function latest() {
	return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
}

// ---- a small runner

const results = [];
const tests = [];

function test(name, fn) {
	tests.push({ name, fn });
}

class AssertionError extends Error {}

function assert(cond, message) {
	if (!cond) {
		throw new AssertionError(message);
	}
}

function eq(actual, expected, message) {
	const a = JSON.stringify(actual);
	const e = JSON.stringify(expected);
	if (a !== e) {
		throw new AssertionError(`${message}: got ${a}, want ${e}`);
	}
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function waitFor(cond, what, ms = 2000) {
	const deadline = Date.now() + ms;
	while (!cond()) {
		if (Date.now() > deadline) {
			throw new AssertionError("timed out waiting for " + what);
		}
		await sleep(1);
	}
}

function settled(promise) {
	const s = { done: false, value: undefined, error: undefined };
	promise.then((v) => {
		s.done = true;
		s.value = v;
	}, (e) => {
		s.done = true;
		s.error = e;
	});
	return s;
}

// newClient makes a client on a fake socket and returns it with its
// events recorded.
const clients = []; // closed after each test, passed or failed

function newClient(options = {}) {
	FakeWebSocket.instances = [];
	FakeWebSocket.refuse = false;
	const client = new Client("ws://hub.test/chat/hub", {
		WebSocket: FakeWebSocket,
		minDelay: 5,
		maxDelay: 20,
		restartDelay: 50,
		...options,
	});
	clients.push(client);
	const states = [];
	client.on("state", (state, info) => states.push({ state, info }));
	return { client, states };
}

// connected opens the latest fake socket and answers its connect.
async function connected(client, id = "c1", user = "ana") {
	await waitFor(() => FakeWebSocket.instances.length > 0 && latest().readyState === 0, "a socket");
	const ws = latest();
	ws.open();
	await waitFor(() => ws.last("connect"), "the connect command");
	ws.reply(ws.last("connect").id, { client: id, user, version: 1 });
	assert(client.state === "connected", "state after the connect result: " + client.state);
	return ws;
}

function pub(room, offset, epoch = "e1", extra = {}) {
	return { push: "pub", room, offset, epoch, time: 1764230000000 + offset, from: { client: "c2", user: "bo" },
		data: { text: "m" + offset }, ...extra };
}

function recordRoom(room) {
	const r = { pubs: [], subscribed: [], events: [] };
	room.on("publication", (p) => {
		r.last = p;
		r.pubs.push(p.offset);
		r.events.push("pub:" + p.offset);
	});
	room.on("subscribed", (s) => {
		r.subscribed.push(s);
		r.events.push("subscribed");
	});
	room.on("epoch", (e) => r.events.push("epoch:" + e.previous.epoch + ">" + e.position.epoch));
	room.on("error", (e) => r.events.push("error:" + e.code));
	return r;
}

// ---- pure parts

test("backoff: full jitter between 0 and min(max, min * 2^failures)", () => {
	eq(backoff(0, 1000, 30000, () => 0), 0, "random 0");
	eq(backoff(0, 1000, 30000, () => 0.5), 500, "first ceiling is minDelay");
	eq(backoff(3, 1000, 30000, () => 0.5), 4000, "ceiling doubles per failure");
	eq(backoff(5, 1000, 30000, () => 0.999999), 29999, "capped at maxDelay");
	eq(backoff(1e6, 1000, 30000, () => 0.5), 15000, "huge failure counts stay capped");
	let min = Infinity;
	let max = -Infinity;
	for (let i = 0; i < 2000; i++) {
		const d = backoff(2, 100, 30000);
		min = Math.min(min, d);
		max = Math.max(max, d);
	}
	assert(min >= 0 && max < 400, `jitter out of [0, 400): ${min}..${max}`);
	assert(min < 40 && max > 360, `jitter does not spread over [0, 400): ${min}..${max}`);
});

test("isDuplicate: same epoch and offset not above", () => {
	const last = { offset: 10, epoch: "a" };
	eq(isDuplicate(null, { offset: 1, epoch: "a" }), false, "no last position");
	eq(isDuplicate(last, { offset: 9, epoch: "a" }), true, "below");
	eq(isDuplicate(last, { offset: 10, epoch: "a" }), true, "equal");
	eq(isDuplicate(last, { offset: 11, epoch: "a" }), false, "above");
	eq(isDuplicate(last, { offset: 40, epoch: "a" }), false, "a jump is no gap and no duplicate");
	eq(isDuplicate(last, { offset: 3, epoch: "b" }), false, "another epoch");
});

test("randomKey: 32 hex digits, fresh each time", () => {
	const a = randomKey();
	const b = randomKey();
	assert(/^[0-9a-f]{32}$/.test(a), "format: " + a);
	assert(a !== b, "two keys alike");
});

test("constructor without a WebSocket implementation throws", () => {
	const saved = globalThis.WebSocket;
	globalThis.WebSocket = undefined;
	try {
		let threw = false;
		try {
			new Client("ws://x/");
		} catch (error) {
			threw = error instanceof TypeError;
		}
		assert(threw, "no TypeError");
	} finally {
		globalThis.WebSocket = saved;
	}
});

// ---- connection

test("connect: subprotocol, connect first with token and data, then the rest", async () => {
	const { client, states } = newClient({ token: async () => "tok", data: { name: "ana" } });
	const room = client.room("lobby", { recent: 50 });
	const history = settled(client.history("lobby", { limit: 5 }));
	eq(room.state, "pending", "room before connect");
	await waitFor(() => FakeWebSocket.instances.length === 1, "the socket");
	const ws = latest();
	eq(ws.url, "ws://hub.test/chat/hub", "url");
	eq(ws.protocols, [PROTOCOL], "subprotocols offered");
	eq(ws.sent.length, 0, "nothing sent before open");
	ws.open();
	await waitFor(() => ws.sent.length === 1, "connect");
	const connect = ws.sent[0];
	eq({ op: connect.op, token: connect.token, data: connect.data }, { op: "connect", token: "tok", data: { name: "ana" } },
		"connect command");
	assert(Number.isInteger(connect.id) && connect.id > 0, "connect id");
	await sleep(5);
	eq(ws.sent.length, 1, "nothing but connect before its result");
	ws.reply(connect.id, { client: "c1", user: "ana", version: 1 });
	eq(ws.ops(), ["connect", "subscribe", "history"], "order after the connect result");
	eq(ws.sent[1].room, "lobby", "subscribe room");
	eq(ws.sent[1].recent, 50, "subscribe recent");
	eq(ws.sent[1].since, undefined, "no since on the first subscribe");
	eq(ws.sent[2].limit, 5, "history limit");
	eq(new Set(ws.sent.map((m) => m.id)).size, 3, "ids unique");
	eq(states.map((s) => s.state), ["connecting", "connected"], "states");
	eq(states[1].info, { client: "c1", user: "ana", version: 1 }, "connected info");
	eq(client.id, "c1", "client.id");
	ws.reply(ws.sent[2].id, { position: { offset: 3, epoch: "e1" }, publications: [{ offset: 3, epoch: "e1", data: 1 }] });
	await tick();
	assert(history.done && !history.error, "history settled");
	eq(history.value.position, { offset: 3, epoch: "e1" }, "history position");
	eq(history.value.publications[0].room, "lobby", "history pubs carry the room");
	client.close();
});

test("first subscribe: recent publications then live, duplicates dropped, in order", async () => {
	const { client } = newClient();
	const room = client.room("lobby", { recent: 2 });
	const r = recordRoom(room);
	const ws = await connected(client);
	const sub = ws.last("subscribe");
	ws.reply(sub.id, {
		room: "lobby",
		position: { offset: 20, epoch: "e1" },
		publications: [pub("lobby", 12), pub("lobby", 20)].map(({ push, ...p }) => p),
	});
	eq(r.subscribed.length, 1, "one subscribed event");
	eq(r.subscribed[0].recovered, undefined, "recovered absent without since");
	eq(r.subscribed[0].reset, false, "no reset on the first subscribe");
	eq(r.subscribed[0].publications.map((p) => p.offset), [12, 20], "publications in the event");
	eq(r.subscribed[0].publications[0].from, { client: "c2", user: "bo" }, "from without info");
	ws.push(pub("lobby", 21, "e1", { from: { client: "c3", info: { name: "Cy" } } }));
	eq(r.last.from, { client: "c3", user: undefined, info: { name: "Cy" } }, "from with info");
	ws.push(pub("lobby", 20)); // duplicate of the last recent one
	ws.push(pub("lobby", 25)); // a jump is fine
	ws.push(pub("lobby", 25)); // duplicate
	ws.push(pub("lobby", 24)); // older
	ws.push(pub("lobby", 26));
	ws.push(pub("other", 27)); // a room we do not have
	eq(r.events, ["subscribed", "pub:12", "pub:20", "pub:21", "pub:25", "pub:26"], "events");
	eq(room.position, { offset: 26, epoch: "e1" }, "position follows the pubs");
	eq(room.state, "subscribed", "room state");
	client.close();
});

test("pubs pushed before the subscribe reply are merged with it, once each", async () => {
	const { client } = newClient();
	const room = client.room("lobby", { recent: 10 });
	const r = recordRoom(room);
	const ws = await connected(client);
	const sub = ws.last("subscribe");
	ws.push(pub("lobby", 5)); // also in the reply
	ws.push(pub("lobby", 6)); // after the reply's position: live
	ws.push(pub("lobby", 1, "e0")); // an older epoch: dropped
	eq(r.events, [], "nothing before the reply");
	ws.reply(sub.id, { position: { offset: 5, epoch: "e1" }, publications: [{ offset: 4, epoch: "e1" }, { offset: 5, epoch: "e1" }] });
	ws.push(pub("lobby", 6));
	ws.push(pub("lobby", 7));
	eq(r.events, ["subscribed", "pub:4", "pub:5", "pub:6", "pub:7"], "events");
	client.close();
});

test("reconnect: backoff, connect again, subscribe with since, recovered publications once", async () => {
	const { client, states } = newClient({ minDelay: 40, maxDelay: 40 });
	const room = client.room("lobby", { recent: 10 });
	const r = recordRoom(room);
	let ws = await connected(client, "c1");
	ws.reply(ws.last("subscribe").id, { position: { offset: 3, epoch: "e1" }, publications: [] });
	ws.push(pub("lobby", 4));
	const history = settled(client.history("lobby"));
	const keyed = settled(room.publish({ text: "hi" }, { key: "k1" }));
	const unkeyed = settled(room.publish({ text: "lost" }));
	ws.drop(1006);
	const disc = states[states.length - 1]; // the close event is handled at once
	eq(disc.state, "disconnected", "state after a drop");
	eq(disc.info.code, 1006, "code");
	assert(disc.info.retryIn >= 0 && disc.info.retryIn <= 40, "first retry within minDelay: " + disc.info.retryIn);
	const refused = settled(client.history("lobby"));
	await tick();
	assert(history.error instanceof DuplexError && history.error.code === 0, "history rejected on the drop");
	assert(unkeyed.error instanceof DuplexError, "unkeyed publish rejected on the drop");
	assert(!keyed.done, "keyed publish waits for the reconnect");
	eq(room.state, "pending", "room pending while disconnected");
	assert(refused.error instanceof DuplexError, "a command while disconnected is rejected at once");

	ws = await connected(client, "c2");
	eq(FakeWebSocket.instances.length, 2, "one new socket");
	eq(ws.ops(), ["connect", "subscribe", "publish"], "rooms first, then the keyed publish");
	const sub = ws.last("subscribe");
	eq(sub.since, { offset: 4, epoch: "e1" }, "since is the last position");
	eq(sub.recent, 10, "recent again, for a failed recovery");
	const again = ws.last("publish");
	eq({ key: again.key, data: again.data }, { key: "k1", data: { text: "hi" } }, "same key, same data");
	ws.push(pub("lobby", 6)); // live, before the reply: merged after it
	ws.reply(sub.id, { position: { offset: 5, epoch: "e1" }, recovered: true,
		publications: [{ offset: 5, epoch: "e1", data: "m5" }] });
	ws.reply(again.id, { position: { offset: 7, epoch: "e1" } });
	ws.push(pub("lobby", 7));
	await tick();
	eq(r.subscribed.length, 2, "two subscribed events");
	eq(r.subscribed[1].recovered, true, "recovered");
	eq(r.subscribed[1].reset, false, "no reset when recovered");
	eq(r.pubs, [4, 5, 6, 7], "every publication once, in order");
	eq(keyed.value, { offset: 7, epoch: "e1" }, "keyed publish resolved after the reconnect");
	assert(client.isOwn({ from: { client: "c1" } }) && client.isOwn({ from: { client: "c2" } }), "isOwn over both connections");
	assert(!client.isOwn({ from: { client: "c3" } }) && !client.isOwn({}), "isOwn of others");
	client.close();
});

test("recovery failed with recent: reset, the recent publications as a fresh start", async () => {
	const { client } = newClient();
	const room = client.room("lobby", { recent: 3 });
	const r = recordRoom(room);
	let ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 9, epoch: "e1" }, publications: [] });
	ws.push(pub("lobby", 10));
	ws.drop(1006);
	ws = await connected(client, "c2");
	// Same epoch, history trimmed: the recent ones are all above since; the
	// epoch changed: offsets start again. Both are delivered as they come.
	ws.reply(ws.last("subscribe").id, { position: { offset: 3, epoch: "e2" }, recovered: false,
		publications: [{ offset: 1, epoch: "e2" }, { offset: 2, epoch: "e2" }, { offset: 3, epoch: "e2" }] });
	ws.push(pub("lobby", 3, "e2")); // duplicate in the new epoch
	ws.push(pub("lobby", 4, "e2"));
	const s = r.subscribed[1];
	eq({ recovered: s.recovered, reset: s.reset }, { recovered: false, reset: true }, "subscribed event");
	eq(s.publications.map((p) => p.offset), [1, 2, 3], "publications of the reset");
	eq(r.events, ["subscribed", "pub:10", "subscribed", "pub:1", "pub:2", "pub:3", "pub:4"], "events");
	eq(room.position, { offset: 4, epoch: "e2" }, "position in the new epoch");
	client.close();
});

test("recovery failed without recent: told, no reset, live from the reply's position", async () => {
	const { client } = newClient();
	const room = client.room("lobby");
	const r = recordRoom(room);
	let ws = await connected(client);
	eq(ws.last("subscribe").recent, undefined, "no recent asked");
	ws.reply(ws.last("subscribe").id, { position: { offset: 9, epoch: "e1" } });
	ws.drop(4010, "insufficient state");
	ws = await connected(client, "c2");
	eq(ws.last("subscribe").since, { offset: 9, epoch: "e1" }, "since from the reply's position, no pub seen");
	ws.reply(ws.last("subscribe").id, { position: { offset: 500, epoch: "e1" }, recovered: false, publications: [] });
	ws.push(pub("lobby", 400)); // below the reply's position: not live
	ws.push(pub("lobby", 501));
	eq({ recovered: r.subscribed[1].recovered, reset: r.subscribed[1].reset }, { recovered: false, reset: false },
		"subscribed event");
	eq(r.pubs, [501], "live only");
	client.close();
});

test("recovered absent from a reply to a subscribe with since counts as false", async () => {
	const { client } = newClient();
	const room = client.room("lobby");
	const r = recordRoom(room);
	let ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 1, epoch: "e1" } });
	ws.drop();
	ws = await connected(client, "c2");
	ws.reply(ws.last("subscribe").id, { position: { offset: 1, epoch: "e1" } });
	eq(r.subscribed[1].recovered, false, "recovered");
	client.close();
});

test("a live epoch change is told and delivered", async () => {
	const { client } = newClient();
	const room = client.room("lobby");
	const r = recordRoom(room);
	const ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 9, epoch: "e1" } });
	ws.push(pub("lobby", 10));
	ws.push(pub("lobby", 1, "e2"));
	ws.push(pub("lobby", 1, "e2"));
	eq(r.events, ["subscribed", "pub:10", "epoch:e1>e2", "pub:1"], "events");
	client.close();
});

// ---- close codes

for (const [code, name] of [[4000, "bad request"], [4001, "unauthorized"]]) {
	test(`close ${code} (${name}): closed, no reconnection; connect() starts again`, async () => {
		const { client, states } = newClient();
		const pending = settled(client.publish("lobby", 1, { key: "k" }));
		let ws = await connected(client);
		ws.drop(code, name);
		await sleep(60);
		eq(FakeWebSocket.instances.length, 1, "no new socket");
		eq(states[states.length - 1], { state: "closed", info: { code, reason: name } }, "closed state");
		assert(pending.error instanceof DuplexError, "pending keyed publish rejected when closed");
		client.connect();
		ws = await connected(client, "c2");
		eq(client.state, "connected", "connect() after closed");
		client.close();
	});
}

test("refused connect: 401 reply then close 4001, the reason told", async () => {
	const { client, states } = newClient();
	await waitFor(() => FakeWebSocket.instances.length === 1, "socket");
	const ws = latest();
	ws.open();
	await waitFor(() => ws.last("connect"), "connect");
	ws.fail(ws.last("connect").id, 401, "bad token");
	ws.drop(4001, "");
	eq(states[states.length - 1], { state: "closed", info: { code: 4001, reason: "bad token" } }, "closed state");
});

test("close 1012: reconnect after restartDelay plus jitter", async () => {
	const { client, states } = newClient({ restartDelay: 300 });
	const ws = await connected(client);
	ws.drop(1012, "service restart");
	const disc = states[states.length - 1];
	eq(disc.state, "disconnected", "state");
	assert(disc.info.retryIn >= 300 && disc.info.retryIn <= 305, "retryIn: " + disc.info.retryIn);
	await sleep(50);
	eq(FakeWebSocket.instances.length, 1, "no socket before the wait");
	await waitFor(() => FakeWebSocket.instances.length === 2, "the reconnection");
	client.close();
});

test("disconnect push: its code when the close frame is missing, reconnect: false closes", async () => {
	let { client, states } = newClient();
	let ws = await connected(client);
	ws.push({ push: "disconnect", code: 4008, reason: "slow consumer", reconnect: true });
	ws.drop(1006);
	eq(states[states.length - 1].state, "disconnected", "reconnects");
	eq(states[states.length - 1].info.code, 4008, "the push's code");
	eq(states[states.length - 1].info.reason, "slow consumer", "the push's reason");
	client.close();

	({ client, states } = newClient());
	ws = await connected(client);
	ws.push({ push: "disconnect", code: 4100, reason: "banned", reconnect: false });
	ws.drop(4100, "banned");
	eq(states[states.length - 1], { state: "closed", info: { code: 4100, reason: "banned" } }, "closed");
	await sleep(40);
	eq(FakeWebSocket.instances.length, 1, "no reconnection");
});

test("backoff grows while attempts fail, resets after a connect", async () => {
	const { client, states } = newClient({ minDelay: 2, maxDelay: 1000 });
	await waitFor(() => FakeWebSocket.instances.length === 1, "socket");
	FakeWebSocket.refuse = true;
	latest().drop(1006);
	await waitFor(() => states.filter((s) => s.state === "disconnected").length >= 6, "failed attempts", 5000);
	const ceilings = states.filter((s) => s.state === "disconnected").map((s) => s.info.retryIn);
	assert(ceilings.every((d, i) => d <= 2 * Math.pow(2, i)), "delays within their ceilings: " + ceilings);
	FakeWebSocket.refuse = false;
	client.connect();
	await connected(client);
	latest().drop(1006);
	const last = states[states.length - 1];
	assert(last.state === "disconnected" && last.info.retryIn <= 2, "first ceiling again: " + last.info.retryIn);
	client.close();
});

test("connect() skips the wait of a pending reconnection", async () => {
	const { client } = newClient({ minDelay: 60000, maxDelay: 60000 });
	const ws = await connected(client);
	ws.drop();
	eq(client.state, "disconnected", "state");
	client.connect();
	eq(FakeWebSocket.instances.length, 2, "a socket at once");
	client.connect();
	eq(FakeWebSocket.instances.length, 2, "connect() while connecting does nothing");
	client.close();
});

test("close(): rejects what waits, closes with 1000, no reconnection, rooms kept", async () => {
	const { client, states } = newClient();
	const room = client.room("lobby");
	const ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 2, epoch: "e1" } });
	const keyed = settled(room.publish(1, { key: "k" }));
	client.close();
	await tick();
	eq(ws.closedWith, { code: 1000, reason: "" }, "socket closed with 1000");
	assert(keyed.error instanceof DuplexError, "keyed publish rejected");
	eq(states[states.length - 1].state, "closed", "state");
	await sleep(40);
	eq(FakeWebSocket.instances.length, 1, "no reconnection");
	client.connect();
	const ws2 = await connected(client, "c2");
	eq(ws2.last("subscribe").since, { offset: 2, epoch: "e1" }, "rooms recovered after connect()");
	client.close();
});

// ---- commands

test("error replies reject with their code; a keyed publish is not sent twice on one connection", async () => {
	const { client } = newClient();
	const ws = await connected(client);
	const p = settled(client.publish("lobby", { text: "x" }, { key: "k" }));
	const h = settled(client.history("lobby", { since: { offset: 1, epoch: "old" } }));
	const q = settled(client.presence("lobby", { statsOnly: true }));
	const [pc, hc, qc] = ws.sent.slice(1);
	eq(qc.stats_only, true, "stats_only");
	ws.fail(pc.id, 429, "slow down");
	ws.fail(hc.id, 410, "gone");
	ws.reply(qc.id, { stats: { clients: 2, users: 2 } });
	await tick();
	assert(p.error instanceof DuplexError && p.error.code === 429 && p.error.message === "slow down", "publish 429");
	assert(h.error instanceof DuplexError && h.error.code === 410, "history 410");
	eq(q.value, { stats: { clients: 2, users: 2 } }, "presence result");
	eq(ws.sent.filter((m) => m.op === "publish").length, 1, "sent once");
	client.close();
});

test("publish while disconnected: keyed waits, unkeyed is rejected", async () => {
	const { client } = newClient({ minDelay: 30, maxDelay: 30 });
	let ws = await connected(client);
	ws.drop();
	const keyed = settled(client.publish("lobby", "a", { key: "k2" }));
	const unkeyed = settled(client.publish("lobby", "b"));
	await tick();
	assert(unkeyed.error instanceof DuplexError, "unkeyed rejected");
	assert(!keyed.done, "keyed waits");
	ws = await connected(client, "c2");
	const sent = ws.last("publish");
	eq(sent.key, "k2", "sent after the reconnect");
	ws.reply(sent.id, { position: { offset: 1, epoch: "e" } });
	await tick();
	eq(keyed.value, { offset: 1, epoch: "e" }, "resolved");
	client.close();
});

test("a keyed publish first sent longer ago than publishRetryWindow is not sent again", async () => {
	const { client } = newClient({ publishRetryWindow: 1 });
	let ws = await connected(client);
	const keyed = settled(client.publish("lobby", "a", { key: "k3" }));
	await sleep(10);
	ws.drop();
	ws = await connected(client, "c2");
	await tick();
	eq(ws.ops(), ["connect"], "not sent again");
	assert(keyed.error instanceof DuplexError, "rejected");
	client.close();
});

test("subscribe refused (403): room failed, error event, not subscribed again", async () => {
	const { client } = newClient();
	const room = client.room("secret");
	const r = recordRoom(room);
	let ws = await connected(client);
	ws.fail(ws.last("subscribe").id, 403, "forbidden");
	eq(room.state, "failed", "state");
	eq(r.events, ["error:403"], "events");
	ws.drop();
	ws = await connected(client, "c2");
	eq(ws.ops(), ["connect"], "no subscribe for a failed room");
	client.close();
});

test("subscribe answered 503: subscribed again after a backoff, on the same connection", async () => {
	const { client } = newClient();
	const room = client.room("lobby");
	const r = recordRoom(room);
	const ws = await connected(client);
	ws.fail(ws.last("subscribe").id, 503, "broker unavailable");
	eq(r.events, [], "no error event for a retry");
	await waitFor(() => ws.sent.filter((m) => m.op === "subscribe").length === 2, "second subscribe");
	ws.reply(ws.last("subscribe").id, { position: { offset: 0, epoch: "e" } });
	eq(room.state, "subscribed", "subscribed");
	client.close();
});

test("room(): a second room of the same name throws; unsubscribe stops its events", async () => {
	const { client } = newClient();
	const room = client.room("lobby");
	let threw = false;
	try {
		client.room("lobby");
	} catch {
		threw = true;
	}
	assert(threw, "duplicate room");
	const r = recordRoom(room);
	const ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 0, epoch: "e" } });
	ws.push(pub("lobby", 1, "e"));
	const done = settled(room.unsubscribe());
	eq(ws.last("unsubscribe").room, "lobby", "unsubscribe sent");
	ws.push(pub("lobby", 2, "e"));
	ws.reply(ws.last("unsubscribe").id, {});
	await tick();
	assert(done.done && !done.error, "unsubscribe resolved");
	eq(r.pubs, [1], "no pub after unsubscribe");
	eq(room.state, "unsubscribed", "state");
	const again = client.room("lobby");
	eq(ws.last("subscribe").since, undefined, "a new room starts afresh");
	assert(again !== room, "a new Room");
	client.close();
});

test("unsubscribe then subscribe again before the replies: old pubs do not leak into the new room", async () => {
	const { client } = newClient();
	const first = client.room("lobby");
	const ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 5, epoch: "e" } });
	first.unsubscribe();
	const second = client.room("lobby", { recent: 5 });
	const r = recordRoom(second);
	ws.push(pub("lobby", 6, "e")); // for the first subscription, before the unsubscribe's reply
	ws.reply(ws.last("unsubscribe").id, {});
	ws.reply(ws.last("subscribe").id, { position: { offset: 6, epoch: "e" },
		publications: [{ offset: 5, epoch: "e" }, { offset: 6, epoch: "e" }] });
	eq(r.pubs, [5, 6], "6 once, from the reply");
	client.close();
});

test("presence: members from the list plus the join and leave pushed meanwhile", async () => {
	const { client } = newClient();
	const room = client.room("lobby", { presence: true });
	const seen = [];
	room.on("join", (m) => seen.push("join:" + m.client));
	room.on("leave", (m) => seen.push("leave:" + m.client));
	let members = null;
	room.on("presence", (m) => {
		members = m;
	});
	let ws = await connected(client);
	eq(ws.last("subscribe").presence, true, "presence asked");
	ws.push({ push: "join", room: "lobby", client: { client: "x", user: "xa" } }); // before the reply
	ws.reply(ws.last("subscribe").id, { position: { offset: 0, epoch: "e" } });
	const list = ws.last("presence");
	assert(list && list.room === "lobby", "presence list asked after subscribe");
	ws.push({ push: "leave", room: "lobby", client: { client: "y", user: "yo" } });
	ws.push({ push: "join", room: "lobby", client: { client: "z", user: "zed", info: { name: "Zed" } } });
	// A list taken before all three: y still in, x and z not yet.
	ws.reply(list.id, { clients: [{ client: "c1", user: "ana" }, { client: "y", user: "yo" }], stats: { clients: 2, users: 2 } });
	eq([...members.keys()].sort(), ["c1", "x", "z"], "members");
	eq(members.get("z").info, { name: "Zed" }, "info kept");
	eq([...room.members.keys()].sort(), ["c1", "x", "z"], "room.members");
	ws.push({ push: "leave", room: "lobby", client: { client: "x" } });
	eq([...members.keys()].sort(), ["c1", "z"], "members after a leave");
	eq(seen, ["join:x", "leave:y", "join:z", "leave:x"], "join and leave events");
	ws.drop();
	ws = await connected(client, "c2");
	ws.reply(ws.last("subscribe").id, { position: { offset: 0, epoch: "e" }, recovered: true });
	ws.reply(ws.last("presence").id, { clients: [{ client: "c2", user: "ana" }] });
	eq([...members.keys()], ["c2"], "members replaced after a reconnect");
	client.close();
});

test("garbage from the server is reported and ignored; a throwing listener breaks nothing", async () => {
	const { client } = newClient();
	const errors = [];
	client.on("error", (e) => errors.push(e.message));
	const room = client.room("lobby");
	const got = [];
	room.on("publication", () => {
		throw new Error("listener bug");
	});
	room.on("publication", (p) => got.push(p.offset));
	const ws = await connected(client);
	ws.reply(ws.last("subscribe").id, { position: { offset: 0, epoch: "e" } });
	ws.raw("not json");
	ws.raw("[1,2]");
	ws.push({ push: "pub", room: "lobby", offset: "1", epoch: "e" });
	ws.push({ push: "future", x: 1 });
	ws.push({ id: 999, result: {} });
	const saved = console.error;
	const reported = [];
	console.error = (e) => reported.push(e.message);
	const savedReport = globalThis.reportError;
	globalThis.reportError = undefined;
	try {
		ws.push(pub("lobby", 1, "e"));
	} finally {
		console.error = saved;
		globalThis.reportError = savedReport;
	}
	eq(errors.length, 3, "three errors reported: " + JSON.stringify(errors));
	eq(got, [1], "the other listener still ran");
	eq(reported, ["listener bug"], "the listener's exception reported");
	eq(client.state, "connected", "still connected");
	client.close();
});

test("listeners added right after the constructor see the first connecting", async () => {
	FakeWebSocket.instances = [];
	const client = new Client("ws://hub.test/", { WebSocket: FakeWebSocket });
	clients.push(client);
	const states = [];
	client.on("state", (s) => states.push(s));
	await tick();
	eq(states, ["connecting"], "states");
	client.close();
	eq(states, ["connecting", "closed"], "states after close");
});

// ---- run

const started = Date.now();
for (const { name, fn } of tests) {
	const t0 = Date.now();
	try {
		await fn();
		results.push({ name, ok: true });
		console.log(`ok   ${name} (${Date.now() - t0} ms)`);
	} catch (error) {
		results.push({ name, ok: false, error: String((error && error.stack) || error) });
		console.log(`FAIL ${name}\n     ${(error && error.stack) || error}`);
	} finally {
		for (const client of clients.splice(0)) {
			client.close();
		}
		FakeWebSocket.refuse = false;
	}
}
const failed = results.filter((r) => !r.ok);
console.log(JSON.stringify({ ok: failed.length === 0, tests: results.length, failed: failed.map((r) => r.name),
	ms: Date.now() - started }));
process.exitCode = failed.length === 0 ? 0 : 1;
