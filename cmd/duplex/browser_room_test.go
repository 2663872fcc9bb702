package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/duplexws/duplex/internal/toxitest"
)

// Timeouts of TestBrowserRoomChat. The page reconnects with full jitter
// from 1 s, doubling up to 30 s; an EventSource retries after the 1 s the
// hub asks for.
const (
	roomStepTimeout      = 20 * time.Second
	roomReconnectTimeout = 60 * time.Second
)

// TestBrowserRoomChat drives the multi-user chat (/chat/index?room=NAME) in
// headless Chromium, as issue 10 asks:
//
//   - pages A and B, each in a browser context of its own, enter names and
//     see each other in the room's presence; A's message reaches B (and is
//     A's own on A), B's reaches A;
//   - a third page follows the room with an EventSource on
//     /chat/rooms/{room}/events and records every event;
//   - page A reaches the server through a TCP proxy (Toxiproxy, in-process):
//     the proxy is disabled, which closes A's connections and refuses new
//     ones, while B sends missedCount messages, then enabled again. Once A
//     has reconnected by itself, it shows every message of the room once,
//     in offset order, the missed ones included, with no "could not be
//     recovered" notice;
//   - the EventSource received the same sequence. Its page goes through a
//     second proxy, which is disabled while B sends more: the browser
//     reconnects by itself with Last-Event-ID, and the hub's subscribed
//     event says recovered: true; no event is missing or doubled.
//
// It runs with the hub in each of its modes: a goroutine per WebSocket (the
// default) and -event-loop.
func TestBrowserRoomChat(t *testing.T) {
	for _, mode := range []struct{ name, flag string }{{"goroutines", ""}, {"event-loop", "-event-loop"}} {
		t.Run(mode.name, func(t *testing.T) {
			args := []string{"-addr", "127.0.0.1:0"}
			if mode.flag != "" {
				args = append(args, mode.flag)
			}
			runBrowserRoomChat(t, args)
		})
	}
}

func runBrowserRoomChat(t *testing.T, args []string) {
	const missedCount = 5 // sent by B while A is cut off
	const afterCount = 3  // sent by B while the EventSource is cut off
	began := time.Now()

	srv := startRun(t, args, nil)
	tox := toxitest.Start(t)
	proxyA := tox.Proxy(t, "page-a", srv.addr)
	proxyC := tox.Proxy(t, "event-stream", srv.addr)
	room := "browser-room-" + randomHex(6)
	t.Logf("server %s; page A through Toxiproxy %s, the EventSource through %s; room %s",
		srv.addr, proxyA.Listen, proxyC.Listen, room)

	browserCtx, stopBrowser := startBrowser(t, 5*time.Minute)
	defer stopBrowser() // after the tabs close, before the proxies and the server stop (t.Cleanup)
	a := newRoomTab(t, browserCtx, "A")
	defer a.close()
	b := newRoomTab(t, browserCtx, "B")
	defer b.close()
	c := newRoomTab(t, browserCtx, "C")
	defer c.close()
	defer func() {
		if !t.Failed() {
			return
		}
		for _, p := range []*roomTab{a, b, c} {
			p.dump()
		}
		t.Logf("server log:\n%s", srv.logs)
	}()

	// 1. The EventSource first, so that it sees the room from its start.
	c.do("opening a page for the EventSource", roomStepTimeout, chromedp.Navigate("http://"+proxyC.Listen+"/healthz"))
	evaluate[bool](c, fmt.Sprintf(openEventSource, strconv.Quote("/chat/rooms/"+room+"/events")))
	c.waitFor("the EventSource is open and subscribed", roomStepTimeout,
		`window.__es.opens === 1 && window.__es.events.length >= 1`)

	// 2. A (through its proxy) and B (direct) join with their names.
	const nameA, nameB = "Ana", "Bo"
	a.join(t, "http://"+proxyA.Listen, room, nameA)
	b.join(t, "http://"+srv.addr, room, nameB)
	for _, p := range []*roomTab{a, b} {
		p.waitFor("both are present", roomStepTimeout, presenceIs(nameA, nameB))
	}
	for _, p := range []*roomTab{a, b} {
		got := evaluate[[]string](p, `[...document.querySelectorAll("#presence li")].map(li => li.textContent)`)
		t.Logf("page %s presence: %q", p.name, got)
	}

	// 3. A sends, B sees it; A sees it as its own. Then the other way.
	a.send("hello from " + nameA)
	b.waitFor("B shows A's message", roomStepTimeout, hasMessage("hello from "+nameA, false))
	a.waitFor("A shows its message as its own", roomStepTimeout, hasMessage("hello from "+nameA, true))
	b.send("hello from " + nameB)
	a.waitFor("A shows B's message", roomStepTimeout, hasMessage("hello from "+nameB, false))
	b.waitFor("B shows its message as its own", roomStepTimeout, hasMessage("hello from "+nameB, true))

	// 4. A's server connection is cut while B sends.
	evaluate[bool](a, `window.__sameDocument = true`)
	socketsBefore := evaluate[int](a, `window.__socketsCreated()`)
	cut := time.Now()
	if err := proxyA.Disable(); err != nil {
		t.Fatalf("disabling page A's proxy: %v", err)
	}
	noticed := a.waitFor("A notices the cut", roomStepTimeout,
		`document.getElementById("status").dataset.state !== "connected" && document.getElementById("chat").disabled`)
	left := b.waitFor("B sees A leave (the hub saw the cut)", roomStepTimeout, presenceIs(nameB))
	t.Logf("cut: page A noticed in %v (status %q); B saw A leave in %v",
		noticed.Round(time.Millisecond), evaluate[string](a, `document.getElementById("status").textContent`),
		left.Round(time.Millisecond))
	var missed []string
	for i := 1; i <= missedCount; i++ {
		text := fmt.Sprintf("missed %d of %d", i, missedCount)
		b.send(text)
		b.waitFor("B shows "+text, roomStepTimeout, hasMessage(text, true))
		missed = append(missed, text)
	}
	if got := evaluate[int](a, `document.querySelectorAll("#messages li.msg").length`); got != 2 {
		t.Errorf("page A shows %d messages while cut off, want 2", got)
	}
	// The outage lasts until A has tried again and been refused at least
	// once (its first retry comes within 1 s, the next within 2 s).
	a.waitFor("A's reconnection is refused", roomStepTimeout, fmt.Sprintf(
		`window.__socketsCreated() > %d && document.getElementById("status").dataset.state === "reconnecting"`,
		socketsBefore))
	refused := evaluate[int](a, `window.__socketsCreated()`) - socketsBefore
	down := time.Since(cut)
	if err := proxyA.Enable(); err != nil {
		t.Fatalf("enabling page A's proxy: %v", err)
	}

	// 5. A reconnects by itself and shows everything, once, in order.
	back := a.waitFor("A reconnects", roomReconnectTimeout, `document.getElementById("status").dataset.state === "connected"`)
	total := 2 + missedCount
	caught := a.waitFor("A shows the missed messages", roomStepTimeout,
		fmt.Sprintf(`document.querySelectorAll("#messages li.msg").length >= %d`, total))
	a.waitFor("A sees both present again", roomStepTimeout, presenceIs(nameA, nameB))
	b.waitFor("B sees A back", roomStepTimeout, presenceIs(nameA, nameB))
	time.Sleep(500 * time.Millisecond) // room for a late duplicate to show
	transitions := evaluate[[]string](a, `window.__states.filter((s, i, all) => i === 0 || s.state !== all[i - 1].state)
		.map(s => s.state + "@" + (s.at - window.__states[0].at))`)
	t.Logf("page A: proxy down %v (%d reconnection attempts refused by then); reconnected %v after the proxy came back "+
		"(%d WebSockets opened since the cut), the missed messages shown %v later; status (ms since the page opened): %s",
		down.Round(time.Millisecond), refused, back.Round(time.Millisecond),
		evaluate[int](a, `window.__socketsCreated()`)-socketsBefore, caught.Round(time.Millisecond),
		strings.Join(transitions, " "))
	if !evaluate[bool](a, `window.__sameDocument === true`) {
		t.Errorf("page A was reloaded: the recovery must happen in the same document")
	}
	want := append([]string{"hello from " + nameA, "hello from " + nameB}, missed...)
	msgsA := a.messages()
	msgsB := b.messages()
	checkRoomList(t, "page A", room, msgsA, want)
	checkRoomList(t, "page B", room, msgsB, want)
	if n := evaluate[int](a, `document.querySelectorAll("#messages li.notice.unrecovered").length`); n != 0 {
		t.Errorf("page A shows %d 'could not be recovered' notices, want none", n)
	}
	// The sender beside each message; one's own marked.
	for i, m := range msgsA {
		own, who := i == 0, nameB
		if own {
			who = nameA + " (you)"
		}
		if m.Own != own || m.Who != who {
			t.Errorf("page A: message %d (%q) own = %v, sender %q; want %v, %q", i+1, m.Text, m.Own, m.Who, own, who)
		}
	}
	for i, m := range msgsB {
		own, who := i > 0, nameA
		if own {
			who = nameB + " (you)"
		}
		if m.Own != own || m.Who != who {
			t.Errorf("page B: message %d (%q) own = %v, sender %q; want %v, %q", i+1, m.Text, m.Own, m.Who, own, who)
		}
	}
	epoch := ""
	if len(msgsB) > 0 {
		epoch = msgsB[0].Epoch
	}

	// 6. The EventSource saw the same sequence.
	c.waitFor("the EventSource has every message", roomStepTimeout,
		fmt.Sprintf(`window.__es.events.filter(e => e.type === "message").length >= %d`, total))
	es := eventLog(c)
	checkEventStream(t, es, room, epoch, want, 1)
	if len(es.Events) > 0 {
		first := es.Events[0]
		if first.Type != "subscribed" || first.ID != epoch+"-0" || first.subscribed().Recovered != nil {
			t.Errorf("the EventSource's first event = %s id %q data %s, want subscribed id %q without recovered",
				first.Type, first.ID, first.Data, epoch+"-0")
		}
	}

	// 7. The EventSource's connection is cut while B sends more; the browser
	//    reconnects with Last-Event-ID and gets exactly what it missed.
	lastID := evaluate[string](c, `window.__es.events[window.__es.events.length - 1].id`)
	esCut := time.Now()
	if err := proxyC.Disable(); err != nil {
		t.Fatalf("disabling the EventSource's proxy: %v", err)
	}
	esNoticed := c.waitFor("the EventSource notices the cut", roomStepTimeout,
		`window.__es.errors >= 1 && window.__esSource.readyState === EventSource.CONNECTING`)
	for i := 1; i <= afterCount; i++ {
		text := fmt.Sprintf("after the event stream cut %d of %d", i, afterCount)
		b.send(text)
		b.waitFor("B shows "+text, roomStepTimeout, hasMessage(text, true))
		want = append(want, text)
	}
	// As for A: down until the browser has tried again and been refused
	// (it retries after the 1 s the hub asked for with "retry:").
	c.waitFor("the EventSource's reconnection is refused", roomStepTimeout, `window.__es.errors >= 2`)
	esDown := time.Since(esCut)
	if err := proxyC.Enable(); err != nil {
		t.Fatalf("enabling the EventSource's proxy: %v", err)
	}
	esBack := c.waitFor("the EventSource reconnects", roomReconnectTimeout, `window.__es.opens >= 2`)
	c.waitFor("the EventSource has every message", roomStepTimeout,
		fmt.Sprintf(`window.__es.events.filter(e => e.type === "message").length >= %d`, len(want)))
	a.waitFor("A shows every message", roomStepTimeout,
		fmt.Sprintf(`document.querySelectorAll("#messages li.msg").length >= %d`, len(want)))
	time.Sleep(500 * time.Millisecond) // room for a late duplicate to show
	es = eventLog(c)
	t.Logf("EventSource: last id before the cut %q; noticed in %v; proxy down %v; reopened %v after the proxy came back; "+
		"%d opens, %d error events", lastID, esNoticed.Round(time.Millisecond), esDown.Round(time.Millisecond),
		esBack.Round(time.Millisecond), es.Opens, es.Errors)
	checkEventStream(t, es, room, epoch, want, 2)
	var subs []esEvent
	for _, e := range es.Events {
		if e.Type == "subscribed" {
			subs = append(subs, e)
		}
	}
	if len(subs) == 2 {
		s := subs[1].subscribed()
		if s.Recovered == nil || !*s.Recovered {
			t.Errorf("the EventSource's second subscribed event has data %s, want recovered: true (the browser "+
				"sent Last-Event-ID %q and the hub recovers from it)", subs[1].Data, lastID)
		}
		// Logged, not asserted: the subscribed event's id (hub/sse.go,
		// eventStream.start) is the position live events follow, ahead of
		// the recovered events after it, so an EventSource cut right after
		// it would resume from there and miss those.
		t.Logf("the resumed stream began with subscribed id %q data %s, then %d recovered events",
			subs[1].ID, subs[1].Data, afterCount)
	}
	if es.Opens != 2 {
		t.Errorf("the EventSource opened %d times, want 2 (one reconnection)", es.Opens)
	}
	checkRoomList(t, "page A, at the end", room, a.messages(), want)
	checkRoomList(t, "page B, at the end", room, b.messages(), want)
	t.Logf("%d messages in room %s, the same once each and in order on A, B and the EventSource; the test took %v",
		len(want), room, time.Since(began).Round(time.Millisecond))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- one tab of the room page

// roomTab is a tab in a browser context of its own (its own storage, its
// own connections).
type roomTab struct {
	t       *testing.T
	name    string
	ctx     context.Context
	cancel  context.CancelFunc
	console *consoleLog
}

func newRoomTab(t *testing.T, browserCtx context.Context, name string) *roomTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	return &roomTab{t: t, name: name, ctx: ctx, cancel: cancel, console: recordConsole(t, ctx)}
}

// close closes the tab and its browser context.
func (p *roomTab) close() { p.cancel() }

func (p *roomTab) do(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("page %s: %s: %v", p.name, what, err)
	}
}

// waitFor polls a JavaScript predicate until it holds and returns how long
// that took.
func (p *roomTab) waitFor(what string, timeout time.Duration, predicate string) time.Duration {
	p.t.Helper()
	start := time.Now()
	p.do("waiting until "+what, timeout, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	return time.Since(start)
}

func evaluate[T any](p *roomTab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("page %s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// watchPage runs before the page's scripts: it counts the WebSockets the
// page creates (countSockets) and records the changes of #status's
// data-state with their times.
const watchPage = countSockets + `;
(() => {
	window.__states = [];
	document.addEventListener("DOMContentLoaded", () => {
		const status = document.getElementById("status");
		const note = () => window.__states.push({ state: status.dataset.state, at: Date.now() });
		note();
		new MutationObserver(note).observe(status, { attributes: true, attributeFilter: ["data-state"] });
	});
})()`

// join opens the room page at origin and enters name.
func (p *roomTab) join(t *testing.T, origin, room, name string) {
	t.Helper()
	p.do("opening the room page", roomStepTimeout,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument,
				page.AddScriptToEvaluateOnNewDocumentParams{Source: watchPage})
			return err
		}),
		chromedp.Navigate(origin+"/chat/index?room="+room),
		// A fresh browser context remembers no name: the input is empty.
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), name+"\r"),
	)
	p.waitFor("the page is connected", roomStepTimeout,
		`document.getElementById("status").dataset.state === "connected" && !document.getElementById("chat").disabled`)
	if got := evaluate[string](p, `document.getElementById("room-name").textContent`); got != room {
		t.Errorf("page %s shows room %q, want %q", p.name, got, room)
	}
}

// send types text into the message input and presses Enter.
func (p *roomTab) send(text string) {
	p.t.Helper()
	p.do("sending "+text, roomStepTimeout,
		chromedp.WaitEnabled(chromedp.CSS("#chat")),
		chromedp.SendKeys(chromedp.CSS("#chat"), text+"\r"))
}

// domMessage is one li of #messages.
type domMessage struct {
	Class  string `json:"class"`
	Offset string `json:"offset"`
	Epoch  string `json:"epoch"`
	Room   string `json:"room"`
	Who    string `json:"who"`
	Text   string `json:"text"`
	Own    bool   `json:"own"`
}

func (p *roomTab) messages() []domMessage {
	p.t.Helper()
	return evaluate[[]domMessage](p, `[...document.querySelectorAll("#messages li")].map(li => ({
		class: li.className,
		offset: li.dataset.offset || "",
		epoch: li.dataset.epoch || "",
		room: li.dataset.room || "",
		who: (li.querySelector(".who") || {}).textContent || "",
		text: (li.querySelector(".text") || li).textContent,
		own: li.classList.contains("own"),
	}))`)
}

// dump logs what the tab shows and what its console said.
func (p *roomTab) dump() {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	p.t.Logf("page %s text (err %v):\n%s", p.name, err, body)
	if es, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__es ? JSON.stringify(window.__es) : ""`)); err == nil && es != "" {
		p.t.Logf("page %s EventSource log: %s", p.name, es)
	}
	p.t.Logf("page %s console:\n%s", p.name, p.console)
}

// presenceIs is a predicate: #presence lists exactly these names (one's own
// marked " (you)"), and #presence-count agrees.
func presenceIs(names ...string) string {
	q, _ := json.Marshal(names)
	return fmt.Sprintf(`(() => {
		const want = %s.slice().sort();
		const got = [...document.querySelectorAll("#presence li")].map(li => li.textContent.replace(/ \(you\)$/, "")).sort();
		return JSON.stringify(got) === JSON.stringify(want) &&
			document.getElementById("presence-count").textContent === String(want.length);
	})()`, q)
}

// hasMessage is a predicate: #messages shows a message with this text,
// marked as one's own or not.
func hasMessage(text string, own bool) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages li.msg")].some(li =>
		li.querySelector(".text").textContent === %s && li.classList.contains("own") === %v)`, strconv.Quote(text), own)
}

// checkRoomList checks that a page shows exactly want, in order, once each,
// with offsets 1..len(want) in one epoch of room (the memory broker numbers
// a room's offsets contiguously from 1).
func checkRoomList(t *testing.T, who, room string, got []domMessage, want []string) {
	t.Helper()
	var offsets, texts []string
	for _, m := range got {
		offsets = append(offsets, m.Offset)
		texts = append(texts, m.Text)
		if !strings.HasPrefix(m.Class, "msg") || m.Room != room {
			t.Errorf("%s shows %q (class %q, room %q) among the messages of room %s", who, m.Text, m.Class, m.Room, room)
		}
	}
	var wantOffsets []string
	for i := range want {
		wantOffsets = append(wantOffsets, strconv.Itoa(i+1))
	}
	if !slices.Equal(offsets, wantOffsets) {
		t.Errorf("%s shows offsets %v, want %v (every message once, in order)", who, offsets, wantOffsets)
	}
	if !slices.Equal(texts, want) {
		t.Errorf("%s shows\n  %q\nwant\n  %q", who, texts, want)
	}
	for _, m := range got {
		if m.Epoch == "" || (len(got) > 0 && m.Epoch != got[0].Epoch) {
			t.Errorf("%s: message %s has epoch %q, first message %q", who, m.Offset, m.Epoch, got[0].Epoch)
		}
	}
}

// ---- the EventSource

// openEventSource opens an EventSource on the URL given (a JSON string) and
// records every event: its type, lastEventId and data, and counts the
// opens and error events.
const openEventSource = `((url) => {
	const log = { events: [], opens: 0, errors: 0 };
	window.__es = log;
	const es = new EventSource(url);
	window.__esSource = es;
	es.onopen = () => { log.opens++; };
	es.onerror = () => { log.errors++; };
	const record = (e) => { log.events.push({ type: e.type, id: e.lastEventId, data: e.data }); };
	es.onmessage = record;
	es.addEventListener("subscribed", record);
	return true;
})(%s)`

type esLog struct {
	Events []esEvent `json:"events"`
	Opens  int       `json:"opens"`
	Errors int       `json:"errors"`
}

type esEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data string `json:"data"`
}

type esSubscribed struct {
	Room     string `json:"room"`
	Position struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	} `json:"position"`
	Recovered *bool `json:"recovered"`
}

func (e esEvent) subscribed() esSubscribed {
	var s esSubscribed
	json.Unmarshal([]byte(e.Data), &s)
	return s
}

type esPub struct {
	Push   string `json:"push"`
	Room   string `json:"room"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	From   *struct {
		User string `json:"user"`
	} `json:"from"`
	Data struct {
		Text string `json:"text"`
	} `json:"data"`
}

func eventLog(c *roomTab) esLog {
	c.t.Helper()
	return evaluate[esLog](c, `window.__es`)
}

// checkEventStream checks that the EventSource received the publications
// of want, in order, once each, with ids epoch-offset matching their data,
// and subscribedEvents subscribed events.
func checkEventStream(t *testing.T, es esLog, room, epoch string, want []string, subscribedEvents int) {
	t.Helper()
	var ids, texts, wantIDs []string
	subs := 0
	for _, e := range es.Events {
		if e.Type == "subscribed" {
			subs++
			continue
		}
		var p esPub
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			t.Errorf("EventSource event %q: data is not a publication: %v: %s", e.ID, err, e.Data)
			continue
		}
		if p.Push != "pub" || p.Room != room || e.ID != p.Epoch+"-"+strconv.FormatUint(p.Offset, 10) || p.From == nil {
			t.Errorf("EventSource event id %q has data %s, want a pub of room %s from a client whose id is its epoch-offset",
				e.ID, e.Data, room)
		}
		ids = append(ids, e.ID)
		texts = append(texts, p.Data.Text)
	}
	for i := range want {
		wantIDs = append(wantIDs, epoch+"-"+strconv.Itoa(i+1))
	}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("EventSource ids %v, want %v (every publication once, in order)", ids, wantIDs)
	}
	if !slices.Equal(texts, want) {
		t.Errorf("EventSource texts\n  %q\nwant\n  %q", texts, want)
	}
	if subs != subscribedEvents {
		t.Errorf("EventSource received %d subscribed events, want %d", subs, subscribedEvents)
	}
}
