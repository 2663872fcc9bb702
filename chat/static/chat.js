// The chat client of the Falcon "WebSockets" guide, made robust: one socket at
// a time, reconnection with exponential backoff and full jitter, and a visible
// connection status.
(function () {
	"use strict";

	var BASE_DELAY_MS = 1000; // the first retry comes within about a second
	var MAX_DELAY_MS = 30000; // retries never wait longer than this

	var input = document.getElementById("chat");
	var response = document.getElementById("response");
	var statusLine = document.getElementById("status");

	// The endpoint sits beside this page: /chat/index -> /chat/connect.
	var url = new URL("connect", window.location.href);
	url.protocol = url.protocol.replace("http", "ws"); // http: -> ws:, https: -> wss:

	var socket = null; // the one socket that is CONNECTING or OPEN, or null
	var failures = 0; // reconnections since the last successful open
	var retryTimer = null; // the pending reconnection, if any
	var countdownTimer = null; // refreshes "reconnecting in N s"
	var retryAt = 0; // when retryTimer fires, in ms since the epoch

	function setStatus(state, text) {
		statusLine.dataset.state = state;
		statusLine.textContent = text;
	}

	function show(text, className) {
		var pre = document.createElement("pre");
		pre.textContent = text; // text, never HTML: replies come from other people
		if (className) {
			pre.className = className;
		}
		response.appendChild(pre);
		pre.scrollIntoView({ block: "end" });
	}

	function cancelRetry() {
		clearTimeout(retryTimer);
		clearInterval(countdownTimer);
		retryTimer = null;
		countdownTimer = null;
	}

	function connect() {
		if (socket !== null) {
			return; // never two sockets
		}
		cancelRetry();
		setStatus("connecting", "connecting");
		console.log("WebSocket Connecting...", url.href);

		var server;
		try {
			server = new WebSocket(url.href);
		} catch (error) {
			console.log("WebSocket Error:", error);
			scheduleReconnect();
			return;
		}
		socket = server;

		server.onopen = function () {
			if (socket !== server) {
				return;
			}
			console.log("WebSocket Connected:", server);
			failures = 0;
			setStatus("connected", "connected");
			input.disabled = false;
			input.focus();
		};

		server.onmessage = function (event) {
			if (socket !== server) {
				return;
			}
			var message;
			try {
				message = JSON.parse(event.data);
			} catch (error) {
				show("Unreadable reply: " + event.data, "error");
				return;
			}
			if (message && typeof message.error === "string") {
				show("Error: " + message.error, "error");
			} else if (message && typeof message.text === "string") {
				show(message.text);
			}
		};

		server.onerror = function (event) {
			// A close event always follows an error event; it reconnects.
			console.log("WebSocket Error:", event);
		};

		server.onclose = function (event) {
			console.log("WebSocket Close:", event.code, event.reason);
			if (socket !== server) {
				return;
			}
			socket = null;
			input.disabled = true;
			scheduleReconnect();
		};
	}

	// scheduleReconnect waits a random time between 0 and
	// min(MAX_DELAY_MS, BASE_DELAY_MS * 2^failures) ("full jitter"), so that
	// the clients of a server that restarts do not all come back at once.
	function scheduleReconnect() {
		cancelRetry();
		var ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * Math.pow(2, failures));
		failures = Math.min(failures + 1, 30);
		var delay = Math.random() * ceiling;
		retryAt = Date.now() + delay;
		retryTimer = setTimeout(function () {
			retryTimer = null;
			connect();
		}, delay);
		countdownTimer = setInterval(showCountdown, 250);
		showCountdown();
	}

	function showCountdown() {
		var seconds = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
		setStatus("reconnecting", "reconnecting in " + seconds + " s");
	}

	// reconnectNow skips the wait when the network comes back or the tab is
	// shown again, but only when no socket is open or connecting.
	function reconnectNow() {
		if (socket === null) {
			connect();
		}
	}

	input.addEventListener("keydown", function (event) {
		if (event.key !== "Enter" || event.isComposing) {
			return;
		}
		if (socket === null || socket.readyState !== WebSocket.OPEN) {
			return;
		}
		socket.send(JSON.stringify({ text: input.value }));
		input.value = "";
	});

	window.addEventListener("online", reconnectNow);
	window.addEventListener("pageshow", reconnectNow);
	document.addEventListener("visibilitychange", function () {
		if (document.visibilityState === "visible") {
			reconnectNow();
		}
	});

	connect();
})();
