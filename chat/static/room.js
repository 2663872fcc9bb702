// The multi-user chat page: /chat/index?room=NAME (default "lobby").
// It asks for a name, then joins the room through the hub (duplex.js): the
// room's recent history, everyone's messages live, who is here, and after
// a reconnection what was missed, once each, or a note that some messages
// could not be recovered. Text only, never HTML: messages come from others.
import { Client, randomKey } from "./duplex.js";

const RECENT = 50; // messages shown on joining
const NAME_KEY = "duplex.chat.name"; // localStorage: the name last used
const OWN_KEY = "duplex.chat.own"; // sessionStorage: this tab's client ids, across reloads
const MAX_OWN = 20;
const NEAR_BOTTOM_PX = 48; // "at the bottom" within this much, for auto-scroll

const nameForm = document.getElementById("name-form");
const nameInput = document.getElementById("name");
const nameError = document.getElementById("name-error");
const chatView = document.getElementById("chat-view");
const messages = document.getElementById("messages");
const notice = document.getElementById("notice");
const presenceList = document.getElementById("presence");
const presenceCount = document.getElementById("presence-count");
const sendForm = document.getElementById("send-form");
const input = document.getElementById("chat");
const sendButton = document.getElementById("send");
const statusLine = document.getElementById("status");

const roomName = new URLSearchParams(window.location.search).get("room") || "lobby";

let client = null;
let room = null;
let members = new Map(); // client id -> {client, user, info}
let countdownTimer = null;
let noticeTimer = null;
const ownIds = new Set(readOwnIds());

// ---- storage that may be unavailable (private mode, disabled cookies)

function storageGet(storage, key) {
	try {
		return window[storage].getItem(key);
	} catch {
		return null;
	}
}

function storageSet(storage, key, value) {
	try {
		window[storage].setItem(key, value);
	} catch {
		// not remembered, that is all
	}
}

function readOwnIds() {
	try {
		const ids = JSON.parse(storageGet("sessionStorage", OWN_KEY) || "[]");
		return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
	} catch {
		return [];
	}
}

function rememberOwnId(id) {
	if (!id || ownIds.has(id)) {
		return;
	}
	ownIds.add(id);
	storageSet("sessionStorage", OWN_KEY, JSON.stringify([...ownIds].slice(-MAX_OWN)));
}

// ---- status

function setStatus(state, text) {
	statusLine.dataset.state = state;
	statusLine.textContent = text;
}

function stopCountdown() {
	clearInterval(countdownTimer);
	countdownTimer = null;
}

function onState(state, info) {
	stopCountdown();
	const connected = state === "connected";
	input.disabled = !connected;
	sendButton.disabled = !connected;
	switch (state) {
	case "connecting":
		setStatus("connecting", info.attempt > 1 ? "reconnecting…" : "connecting…");
		break;
	case "connected":
		rememberOwnId(info.client);
		setStatus("connected", "connected");
		if (document.activeElement === document.body || document.activeElement === null) {
			input.focus();
		}
		break;
	case "disconnected": {
		const show = () => {
			const seconds = Math.max(1, Math.ceil((info.retryAt - Date.now()) / 1000));
			setStatus("reconnecting", `reconnecting in ${seconds} s`);
		};
		show();
		countdownTimer = setInterval(show, 250);
		break;
	}
	case "closed":
		if (info.code === 4001) {
			// The server refused us (the name?): ask again.
			leave();
			setStatus("closed", "not allowed in");
			askName(info.reason || "The server refused this name.");
			return;
		}
		setStatus("closed", info.reason ? `disconnected: ${info.reason}` : "disconnected");
		break;
	}
}

// Skip the wait when the network comes back or the tab is shown again.
function reconnectNow() {
	if (client !== null && client.state === "disconnected") {
		client.connect();
	}
}

window.addEventListener("online", reconnectNow);
window.addEventListener("pageshow", reconnectNow);
document.addEventListener("visibilitychange", () => {
	if (document.visibilityState === "visible") {
		reconnectNow();
	}
});

// ---- messages

// showNotice shows a line under the messages: for 8 s, or until the page
// leaves the room when sticky.
function showNotice(text, sticky) {
	notice.textContent = text;
	notice.hidden = false;
	clearTimeout(noticeTimer);
	if (!sticky) {
		noticeTimer = setTimeout(() => {
			notice.hidden = true;
		}, 8000);
	}
}

function isNearBottom() {
	return messages.scrollHeight - messages.scrollTop - messages.clientHeight <= NEAR_BOTTOM_PX;
}

function scrollToBottom() {
	messages.scrollTop = messages.scrollHeight;
}

// append adds an element to the list, scrolling along when the reader was
// at the bottom (or when it is their own message).
function append(element, follow) {
	const stick = follow || isNearBottom();
	messages.appendChild(element);
	if (stick) {
		scrollToBottom();
	}
}

function displayName(user, info) {
	if (info && typeof info.name === "string" && info.name !== "") {
		return info.name;
	}
	return typeof user === "string" && user !== "" ? user : "anonymous";
}

function senderName(pub) {
	if (!pub.from) {
		return "server";
	}
	if ((typeof pub.from.user === "string" && pub.from.user !== "") || pub.from.info) {
		return displayName(pub.from.user, pub.from.info);
	}
	const member = members.get(pub.from.client);
	return member ? displayName(member.user, member.info) : "anonymous";
}

function messageText(data) {
	if (data && typeof data === "object" && typeof data.text === "string") {
		return data.text;
	}
	return JSON.stringify(data); // a publication not made by this page
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function addMessage(pub) {
	const own = pub.from !== undefined && ownIds.has(pub.from.client);
	const item = document.createElement("li");
	item.className = own ? "msg own" : pub.from ? "msg" : "msg system";
	item.dataset.room = pub.room;
	item.dataset.offset = String(pub.offset);
	item.dataset.epoch = pub.epoch;

	const meta = document.createElement("div");
	meta.className = "meta";
	const who = document.createElement("span");
	who.className = "who";
	who.textContent = own ? senderName(pub) + " (you)" : senderName(pub);
	meta.appendChild(who);
	const when = new Date(pub.time);
	if (typeof pub.time === "number" && Number.isFinite(when.getTime())) {
		const time = document.createElement("time");
		time.dateTime = when.toISOString();
		time.textContent = timeFormat.format(when);
		time.title = fullFormat.format(when);
		meta.appendChild(time);
	}
	item.appendChild(meta);

	const text = document.createElement("p");
	text.className = "text";
	text.textContent = messageText(pub.data);
	item.appendChild(text);

	append(item, own);
}

function addGapNote() {
	const item = document.createElement("li");
	item.className = "notice unrecovered";
	item.setAttribute("role", "note");
	item.textContent = "Some messages could not be recovered.";
	append(item, false);
}

function onSubscribed({ recovered, reset }) {
	if (reset) {
		// The recent messages follow as a fresh start.
		messages.replaceChildren();
	}
	if (recovered === false) {
		addGapNote();
	}
}

// ---- presence

function renderPresence(map) {
	members = map;
	const people = [...map.values()].map((m) => ({ id: m.client, name: displayName(m.user, m.info) }));
	people.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
	const items = people.map((p) => {
		const li = document.createElement("li");
		li.dataset.client = p.id;
		const own = client !== null && p.id === client.id;
		li.textContent = own ? p.name + " (you)" : p.name;
		if (own) {
			li.className = "own";
		}
		return li;
	});
	presenceList.replaceChildren(...items);
	presenceCount.textContent = String(people.length);
}

// ---- sending

sendForm.addEventListener("submit", (event) => {
	event.preventDefault(); // no navigation (and form-action 'none' forbids it)
	const text = input.value;
	if (room === null || client === null || client.state !== "connected" || text.trim() === "") {
		return;
	}
	input.value = "";
	// The key makes the publish safe to send again after a reconnection.
	room.publish({ text }, { key: randomKey() }).catch((error) => {
		showNotice(`Not sent (${error.message}).`);
		if (input.value === "") {
			input.value = text; // give the text back
		}
	});
});

// ---- joining and leaving

function join(name) {
	nameForm.hidden = true;
	chatView.hidden = false;
	sendForm.hidden = false;
	messages.replaceChildren();
	notice.hidden = true;
	renderPresence(new Map());

	const url = new URL("hub", window.location.href); // /chat/index -> /chat/hub
	url.protocol = url.protocol.replace("http", "ws"); // http: -> ws:, https: -> wss:
	url.search = "";
	client = new Client(url, { data: { name } });
	client.on("state", onState);
	client.on("error", (error) => console.log("duplex:", error));
	room = client.room(roomName, { recent: RECENT, presence: true });
	room.on("subscribed", onSubscribed);
	room.on("publication", addMessage);
	room.on("epoch", addGapNote); // the server lost the room's history meanwhile
	room.on("presence", renderPresence);
	room.on("error", (error) => {
		showNotice(`Could not join ${roomName}: ${error.message}`, true);
	});
}

function leave() {
	stopCountdown();
	if (client !== null) {
		const old = client;
		client = null;
		room = null;
		old.close();
	}
	input.disabled = true;
	sendButton.disabled = true;
}

function askName(error) {
	chatView.hidden = true;
	sendForm.hidden = true;
	nameForm.hidden = false;
	nameError.textContent = error || "";
	nameError.hidden = !error;
	nameInput.focus();
	nameInput.select();
}

// validRoom follows PROTOCOL.md: 1 to 256 bytes of UTF-8, no control characters.
function validRoom(name) {
	const bytes = new TextEncoder().encode(name).length;
	return bytes >= 1 && bytes <= 256 && !/[\u0000-\u001f\u007f-\u009f]/.test(name);
}

nameForm.addEventListener("submit", (event) => {
	event.preventDefault();
	const name = nameInput.value.trim();
	if (name === "") {
		askName("Please enter a name.");
		return;
	}
	storageSet("localStorage", NAME_KEY, name);
	join(name);
});

document.getElementById("room-name").textContent = roomName;
document.title = `${roomName} · Duplex chat`;
nameInput.value = storageGet("localStorage", NAME_KEY) || "";
if (validRoom(roomName)) {
	askName("");
} else {
	askName("This room name is not valid (1 to 256 bytes, no control characters).");
	nameInput.disabled = true;
	nameForm.querySelector("button").disabled = true;
}
