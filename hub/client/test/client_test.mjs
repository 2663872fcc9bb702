// Integration test of duplex.js against a running hub, for the Go tests to run.
//
// Usage:
//   DUPLEX_HUB_URL=ws://127.0.0.1:PORT/chat/hub node hub/client/test/client_test.mjs
//
// Environment:
//   DUPLEX_HUB_URL          the hub's WebSocket endpoint (required)
//   NODE_WS_PATH            the npm "ws" package: its directory, or a node_modules
//                           directory holding it (default: interop/node/node_modules/ws
//                           of this repository, then Node's own resolution)
//   DUPLEX_TOKEN            a token for connect (optional)
//   DUPLEX_TEST_ROOM        the room (default: a fresh random name)
//   DUPLEX_TEST_TIMEOUT_MS  how long one step may wait (default 10000)
//
// Two clients A and B subscribe to one room. A publishes; both must receive
// every publication once, in order. Then B's socket is cut (terminate(): no
// close frame) and its reconnection held back while A publishes more; B
// must then reconnect, recover, and have received exactly the missed ones,
// once each, in order. Last, B publishes with a key twice: once its socket is
// cut when the publish's reply arrives (the hub has appended it; the client
// never sees the reply), so that the publish sent again after the reconnect
// must get the first one's position from the hub's idempotency; once the
// socket is cut right after the send (the hub may not have read it). Each
// publish resolves after the reconnect and the room holds it once.
//
// Output: a line per check, then one JSON summary line (the last line):
//   {"ok":true,"url":...,"room":...,"checks":[{"name":...,"ok":true,"detail":...}],...}
// Exit status: 0 when every check passed, 1 when one failed, 2 when the
// harness itself could not run (no URL, no ws package).

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client, randomKey } from "../duplex.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

function loadWs() {
	const candidates = [];
	if (process.env.NODE_WS_PATH) {
		const p = path.resolve(process.env.NODE_WS_PATH);
		candidates.push(path.basename(p) === "node_modules" ? path.join(p, "ws") : p);
	} else {
		candidates.push(path.resolve(here, "../../../interop/node/node_modules/ws"));
		candidates.push("ws");
	}
	const errors = [];
	for (const c of candidates) {
		try {
			const ws = require(c);
			const WebSocket = ws.WebSocket || ws;
			if (typeof WebSocket === "function") {
				return WebSocket;
			}
			errors.push(`${c}: no WebSocket export`);
		} catch (error) {
			errors.push(`${c}: ${error.message.split("\n")[0]}`);
		}
	}
	throw new Error("cannot load the ws package (" + errors.join("; ") + "); set NODE_WS_PATH");
}

function fatal(message) {
	console.log(JSON.stringify({ ok: false, error: message }));
	process.exit(2);
}

const url = process.env.DUPLEX_HUB_URL;
if (!url) {
	fatal("DUPLEX_HUB_URL is not set (ws://host:port/path of the hub)");
}
let WS;
try {
	WS = loadWs();
} catch (error) {
	fatal(error.message);
}

const STEP = Number(process.env.DUPLEX_TEST_TIMEOUT_MS) || 10000;
const room = process.env.DUPLEX_TEST_ROOM || "client-test-" + randomKey().slice(0, 12);
const run = randomKey().slice(0, 8); // marks this run's publications
const LIVE = 5; // published while both are connected
const MISSED = 10; // published while B is away

const checks = [];
const started = Date.now();

function check(name, ok, detail) {
	checks.push(detail === undefined ? { name, ok } : { name, ok, detail });
	console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail === undefined ? "" : " " + JSON.stringify(detail)}`);
	return ok;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(cond, what, ms = STEP) {
	const deadline = Date.now() + ms;
	while (!cond()) {
		if (Date.now() > deadline) {
			throw new Error("timed out after " + ms + " ms waiting for " + what);
		}
		await sleep(5);
	}
}

// A WebSocket class per client: it keeps its sockets, so that the test can
// cut them, and refuses to connect while held (the attempt fails like an
// unreachable server and the client backs off). With state.intercept set,
// it shows the test each message the client sends (onSend) and each one the
// server sends before the client sees it (onMessage returns true to hide
// it); a socket cut by cut() passes nothing more to the client, as after a
// real cut.
function socketsOf() {
	const state = { sockets: [], held: false, intercept: null };
	class TestSocket extends WS {
		constructor(address, protocols) {
			if (state.held) {
				throw new Error("reconnection held back by the test");
			}
			super(address, protocols);
			this.cutByTest = false;
			state.sockets.push(this);
		}

		send(data, ...rest) {
			if (state.intercept) {
				state.intercept.onSend(this, data);
			}
			return super.send(data, ...rest);
		}

		cut() {
			this.cutByTest = true;
			this.terminate();
		}

		get onmessage() {
			return super.onmessage;
		}

		set onmessage(fn) {
			super.onmessage = typeof fn !== "function" ? fn : (event) => {
				if (this.cutByTest || (state.intercept && state.intercept.onMessage(this, event))) {
					return;
				}
				fn(event);
			};
		}
	}
	state.WebSocket = TestSocket;
	return state;
}

function makeClient(name, sockets, options = {}) {
	const client = new Client(url, {
		WebSocket: sockets.WebSocket,
		token: process.env.DUPLEX_TOKEN || undefined,
		data: { name },
		minDelay: 50,
		maxDelay: 500,
		restartDelay: 200,
		...options,
	});
	const log = { name, states: [], pubs: [], subscribed: [], errors: [] };
	client.on("state", (state, info) => log.states.push({ state, info }));
	client.on("error", (error) => {
		const message = String(error.message || error);
		if (!message.includes("held back by the test")) {
			log.errors.push(message);
		}
	});
	const r = client.room(room, { presence: true });
	r.on("publication", (pub) => {
		if (pub.data && pub.data.run === run) {
			log.pubs.push(pub);
		}
	});
	r.on("subscribed", (s) => log.subscribed.push(s));
	r.on("error", (error) => log.errors.push(`room: ${error.code} ${error.message}`));
	return { client, room: r, log, sockets };
}

const key = (p) => p.epoch + "/" + p.offset;

// inOrderOnce says whether pubs are strictly increasing within an epoch
// and hold no position twice.
function inOrderOnce(pubs) {
	const seen = new Set();
	for (let i = 0; i < pubs.length; i++) {
		if (seen.has(key(pubs[i]))) {
			return false;
		}
		seen.add(key(pubs[i]));
		if (i > 0 && pubs[i].epoch === pubs[i - 1].epoch && pubs[i].offset <= pubs[i - 1].offset) {
			return false;
		}
	}
	return true;
}

const summary = (pubs) => pubs.map((p) => p.data.n);

let a;
let b;
try {
	const sa = socketsOf();
	const sb = socketsOf();
	a = makeClient("test-a", sa);
	b = makeClient("test-b", sb);

	// 1. Both connect and subscribe.
	await waitFor(() => a.client.state === "connected" && b.client.state === "connected", "both clients connected");
	check("connect", a.client.id !== "" && a.client.id !== b.client.id, { a: a.client.id, b: b.client.id });
	await waitFor(() => a.log.subscribed.length > 0 && b.log.subscribed.length > 0, "both subscribed");
	check("subscribe", a.room.state === "subscribed" && b.room.state === "subscribed" &&
		a.log.subscribed[0].recovered === undefined, { position: a.room.position });
	const start = a.room.position; // this run's publications come after it

	// 2. Live: A publishes, both receive each once, in order.
	const published = [];
	for (let n = 1; n <= LIVE; n++) {
		const position = await a.room.publish({ text: `live ${n}`, run, n }, { key: randomKey() });
		published.push({ n, ...position });
	}
	await waitFor(() => a.log.pubs.length >= LIVE && b.log.pubs.length >= LIVE, "both received the live publications");
	await sleep(100); // room for a duplicate to show up
	const expectLive = published.map((p) => p.n);
	check("live: A received each once, in order", JSON.stringify(summary(a.log.pubs)) === JSON.stringify(expectLive) &&
		inOrderOnce(a.log.pubs), { got: summary(a.log.pubs) });
	check("live: B received each once, in order", JSON.stringify(summary(b.log.pubs)) === JSON.stringify(expectLive) &&
		inOrderOnce(b.log.pubs), { got: summary(b.log.pubs) });
	check("live: positions match the publish results",
		JSON.stringify(a.log.pubs.map(key)) === JSON.stringify(published.map(key)), {
			published: published.map(key),
			received: a.log.pubs.map(key),
		});
	check("live: from.client is the publisher", a.log.pubs.every((p) => p.from && p.from.client === a.client.id &&
		a.client.isOwn(p) && !b.client.isOwn(p)));

	// 3. Presence: each sees the other.
	await waitFor(() => a.room.members.has(b.client.id) && b.room.members.has(a.client.id), "presence of both");
	check("presence", true, { a: [...a.room.members.keys()].length, b: [...b.room.members.keys()].length });

	// 4. B's socket is cut, its reconnection held back; A publishes more.
	const bConnections = b.log.states.filter((s) => s.state === "connected").length;
	sb.held = true;
	sb.sockets[sb.sockets.length - 1].terminate();
	await waitFor(() => b.client.state !== "connected", "B to notice the cut");
	const missed = [];
	for (let n = LIVE + 1; n <= LIVE + MISSED; n++) {
		const position = await a.room.publish({ text: `missed ${n}`, run, n }, { key: randomKey() });
		missed.push({ n, ...position });
		published.push({ n, ...position });
	}
	await waitFor(() => a.log.pubs.length >= LIVE + MISSED, "A received what it published");
	check("drop: B received nothing while away", b.log.pubs.length === LIVE, { got: summary(b.log.pubs) });

	// 5. B reconnects and recovers exactly the missed ones.
	sb.held = false;
	b.client.connect(); // skips the backoff
	await waitFor(() => b.log.subscribed.length >= 2, "B to subscribe again");
	// What is missing shows in the checks below, not as a timeout.
	await waitFor(() => b.log.pubs.length >= LIVE + MISSED, "B to receive the missed ones").catch(() => {});
	await sleep(200); // room for a duplicate to show up
	const recovery = b.log.subscribed[b.log.subscribed.length - 1];
	check("recover: reconnected", b.log.states.filter((s) => s.state === "connected").length === bConnections + 1 &&
		b.client.state === "connected", { states: b.log.states.slice(-4).map((s) => s.state) });
	check("recover: recovered true, not reset", recovery.recovered === true && recovery.reset === false, {
		recovered: recovery.recovered,
		reset: recovery.reset,
	});
	check("recover: the reply held exactly the missed ones",
		JSON.stringify(recovery.publications.filter((p) => p.data && p.data.run === run).map(key)) ===
			JSON.stringify(missed.map(key)), { got: recovery.publications.map((p) => p.data && p.data.n) });
	check("recover: B received every publication once, in order",
		JSON.stringify(summary(b.log.pubs)) === JSON.stringify(published.map((p) => p.n)) && inOrderOnce(b.log.pubs),
		{ got: summary(b.log.pubs) });
	check("recover: A and B saw the same sequence",
		JSON.stringify(a.log.pubs.map(key)) === JSON.stringify(b.log.pubs.map(key)));

	// 6. Keyed publishes across a cut: each is sent again after the
	//    reconnect with the same key, and appended once.
	const resolved = (pending) => Promise.race([
		pending,
		sleep(STEP).then(() => {
			throw new Error("the keyed publish did not resolve after the reconnect");
		}),
	]);
	const count = (log, n) => log.pubs.filter((p) => p.data.n === n).length;

	// 6a. The socket is cut when the publish's reply arrives: the hub has
	//     appended it, the client never sees the reply. The publish sent
	//     again must get the first one's position, not a new one.
	const n1 = LIVE + MISSED + 1;
	const key1 = randomKey();
	let firstReply = null;
	sb.intercept = {
		id: 0,
		onSend(socket, data) {
			const m = JSON.parse(data);
			if (this.id === 0 && m.op === "publish" && m.key === key1) {
				this.id = m.id;
			}
		},
		onMessage(socket, event) {
			const m = JSON.parse(event.data);
			if (this.id === 0 || m.id !== this.id) {
				return false;
			}
			firstReply = m;
			sb.intercept = null;
			socket.cut();
			return true;
		},
	};
	const connectionsBefore = b.log.states.filter((s) => s.state === "connected").length;
	const position1 = await resolved(b.room.publish({ text: `keyed ${n1}`, run, n: n1 }, { key: key1 }));
	published.push({ n: n1, ...position1 });
	const firstPosition = firstReply && firstReply.result && firstReply.result.position;
	check("keyed publish, reply lost in a cut: the hub had appended it", firstPosition !== undefined &&
		firstPosition !== null && key(firstPosition) === key(position1) &&
		b.log.states.filter((s) => s.state === "connected").length === connectionsBefore + 1,
	{ firstReply: firstPosition, resolved: position1 });

	// 6b. The socket is cut right after the send: the hub may not have
	//     read it (ws compresses before it writes, so it usually has not).
	const n2 = n1 + 1;
	const pending2 = b.room.publish({ text: `keyed ${n2}`, run, n: n2 }, { key: randomKey() });
	sb.sockets[sb.sockets.length - 1].cut();
	const position2 = await resolved(pending2);
	published.push({ n: n2, ...position2 });

	await waitFor(() => a.log.pubs.length >= published.length && b.log.pubs.length >= published.length,
		"both received the keyed publications");
	await sleep(300);
	check("keyed publishes across a cut: each once for A and B, in order", [n1, n2].every((n) =>
		count(a.log, n) === 1 && count(b.log, n) === 1) &&
		JSON.stringify(a.log.pubs.slice(-2).map(key)) === JSON.stringify([position1, position2].map(key)) &&
		JSON.stringify(b.log.pubs.map(key)) === JSON.stringify(published.map(key)),
	{ a: [count(a.log, n1), count(a.log, n2)], b: [count(b.log, n1), count(b.log, n2)], position1, position2 });

	// 7. History after the start position: the same sequence.
	const history = await a.room.history({ since: start, limit: published.length + 10 });
	const ours = history.publications.filter((p) => p.data && p.data.run === run);
	check("history: the same sequence", JSON.stringify(ours.map(key)) === JSON.stringify(published.map(key)),
		{ got: ours.map((p) => p.data.n) });
	check("no errors reported", a.log.errors.length === 0 && b.log.errors.length === 0,
		{ a: a.log.errors, b: b.log.errors });
} catch (error) {
	check("run", false, String((error && error.message) || error));
}

if (a) {
	a.client.close();
}
if (b) {
	b.client.close();
}
const ok = checks.length > 0 && checks.every((c) => c.ok);
console.log(JSON.stringify({
	ok,
	url,
	room,
	checks,
	received: { a: a ? a.log.pubs.length : 0, b: b ? b.log.pubs.length : 0 },
	ms: Date.now() - started,
}));
process.exit(ok ? 0 : 1);
