package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// countSockets wraps the page's WebSocket constructor to keep every socket the
// page creates, so that the test can count the live ones (connecting or open)
// and see that a reconnection trigger never makes a second one. It runs before
// the page's scripts.
const countSockets = `(() => {
	const Native = window.WebSocket;
	const sockets = [];
	window.__liveSockets = () => sockets.filter(s => s.readyState <= Native.OPEN).length;
	window.__socketsCreated = () => sockets.length;
	window.__extensions = () => sockets.filter(s => s.readyState === Native.OPEN).map(s => s.extensions).join(" | ");
	window.WebSocket = class extends Native {
		constructor(...args) { super(...args); sockets.push(this); }
	};
})()`

// TestBrowserChat drives the chat page in headless Chromium: it echoes, shows
// "reconnecting" when the server goes away, and reconnects by itself when the
// server comes back on the same port.
func TestBrowserChat(t *testing.T) {
	srv := startRun(t, []string{"-addr", "127.0.0.1:0"}, nil)
	pageURL := "http://" + srv.addr + "/chat/echo"

	// The whole test, browser included, is bounded; each wait has its own deadline below.
	browserCtx, cancelBrowser := startBrowser(t, 3*time.Minute)
	console := recordConsole(t, browserCtx)
	// On failure, show what the page said and what it shows.
	defer func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(browserCtx, 5*time.Second)
		defer cancel()
		body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Logf("page text (err %v):\n%s", err, body)
		t.Logf("browser console:\n%s", console)
		t.Logf("server log:\n%s", srv.logs)
	}()

	// step runs actions with a deadline.
	step := func(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browserCtx, timeout)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitFor polls a JavaScript predicate until it is true, with a deadline.
	waitFor := func(what string, timeout time.Duration, predicate string) {
		t.Helper()
		step("waiting until "+what, timeout, chromedp.Poll[chromedp.Void](predicate,
			chromedp.WithPollingInterval(50*time.Millisecond),
			chromedp.WithPollingTimeout(timeout)))
	}
	evaluate := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(browserCtx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return v
	}
	status := func() string { return evaluate(`document.getElementById("status").textContent`) }
	echoed := func(text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#response pre")].some(p => p.textContent === %s)`,
			strconv.Quote("Echo: "+text))
	}

	// 1. The page connects: the input is enabled and the status says so.
	step("opening the page", 30*time.Second,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument,
				page.AddScriptToEvaluateOnNewDocumentParams{Source: countSockets})
			return err
		}),
		chromedp.Navigate(pageURL),
		chromedp.WaitEnabled(chromedp.CSS("#chat")),
	)
	if got := status(); got != "connected" {
		t.Errorf("status with the input enabled = %q, want connected", got)
	}
	evaluate(`window.__sameDocument = "yes"`) // a reload would lose it

	// 2. Enter sends the message and clears the input; the echo appears.
	step("typing a message", 10*time.Second, chromedp.SendKeys(chromedp.CSS("#chat"), "hello from chromium\r"))
	waitFor("the echo of the first message is shown", 10*time.Second, echoed("hello from chromium"))
	if got := evaluate(`document.getElementById("chat").value`); got != "" {
		t.Errorf("input after Enter = %q, want it cleared", got)
	}

	// Chromium offers permessage-deflate and the server accepts it: a message
	// above the compression threshold goes compressed both ways.
	if got := evaluate(`window.__extensions()`); !strings.HasPrefix(got, "permessage-deflate") {
		t.Errorf("negotiated extensions %q, want permessage-deflate", got)
	}
	long := strings.Repeat("compressed both ways ", 8)
	step("typing a long message", 20*time.Second, chromedp.SendKeys(chromedp.CSS("#chat"), long+"\r"))
	waitFor("the echo of the long message is shown", 10*time.Second, echoed(long))

	// 3. Going online or becoming visible again while connected opens no second socket.
	if got := evaluate(`window.dispatchEvent(new Event("online"));
		document.dispatchEvent(new Event("visibilitychange"));
		window.dispatchEvent(new Event("pageshow"));
		window.__liveSockets() + " of " + window.__socketsCreated()`); got != "1 of 1" {
		t.Errorf("live sockets after online/visibilitychange/pageshow while connected = %s, want 1 of 1", got)
	}

	// 4. The server goes away: the page says it is reconnecting and disables the input.
	if err := srv.stop(); err != nil {
		t.Fatalf("stopping the server: %v", err)
	}
	waitFor("the status says reconnecting", 15*time.Second,
		`document.getElementById("status").textContent.startsWith("reconnecting in ") && document.getElementById("chat").disabled`)

	// 5. The server comes back on the same port: the page reconnects without a reload.
	srv2 := startRun(t, []string{"-addr", srv.addr}, nil)
	// The backoff is capped at 30 s, so the page is back within that after a failure.
	waitFor("the page reconnects", 45*time.Second,
		`document.getElementById("status").textContent === "connected" && !document.getElementById("chat").disabled`)
	step("typing a message after the restart", 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#chat"), "hello again\r"))
	waitFor("the echo after the restart is shown", 10*time.Second, echoed("hello again"))
	if got := evaluate(`String(document.querySelectorAll("#response pre").length)`); got != "3" {
		t.Errorf("%s <pre> elements, want 3 (no reload, no duplicate replies)", got)
	}
	if got := evaluate(`String(window.__sameDocument)`); got != "yes" {
		t.Errorf("the page was reloaded (window.__sameDocument = %s), want the same document", got)
	}
	if got := evaluate(`String(window.__liveSockets())`); got != "1" {
		t.Errorf("%s live sockets after reconnecting, want 1", got)
	}
	if len(srv2.logs.linesWith("websocket opened")) != 1 {
		t.Errorf("the restarted server saw %d connections, want 1:\n%s", len(srv2.logs.linesWith("websocket opened")), srv2.logs)
	}

	// Close the browser before the server, so that the page does not keep reconnecting.
	cancelBrowser()
}

// startBrowser starts headless Chromium for one test, bounded by timeout,
// with the flags every browser test needs and extra ones. It returns the
// context of the browser's first tab (chromedp.NewContext on it opens
// another tab in the same browser) and a func that closes the browser and
// waits for its process and for chromedp's goroutines to end, so that
// goleak (TestMain) finds none of them; the func is also registered with
// t.Cleanup, and calling it again does nothing. The test is skipped when
// Chromium is missing, except in CI, where it fails.
func startBrowser(t *testing.T, timeout time.Duration, extra ...chromedp.ExecAllocatorOption) (context.Context, func()) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (./scripts/test installs it): %v", chromiumPath, err)
		}
		t.Skipf("%s is missing; ./scripts/test installs it", chromiumPath)
	}
	testCtx, cancelTest := context.WithTimeout(context.Background(), timeout)
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox, // the test may run as root in a container
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// Containers often have a tiny /dev/shm, which crashes Chromium's renderers.
		chromedp.Flag("disable-dev-shm-usage", true),
	}, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(testCtx, opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Gracefully (Browser.close), so that Chromium writes out
			// what it buffers, such as a net log; cancelBrowser ends it
			// if that fails.
			ctx, cancel := context.WithTimeout(browserCtx, 10*time.Second)
			chromedp.Cancel(ctx)
			cancel()
			cancelBrowser()
			cancelAlloc() // waits for the browser process to exit
			cancelTest()
		})
	}
	t.Cleanup(stop)
	// Start the browser with a context that has no timeout of its own (see chromedp.Run).
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return browserCtx, stop
}

// consoleLog keeps what the pages of a tab wrote to the console, and the
// exceptions they threw, to show when a test fails.
type consoleLog struct {
	mu    sync.Mutex
	lines []string
}

// recordConsole records the console of the tab of ctx.
func recordConsole(t *testing.T, ctx context.Context) *consoleLog {
	t.Helper()
	l := &consoleLog{}
	if err := chromedp.Listen(ctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				if a.Value != nil {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			line = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text)
		default:
			return
		}
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *consoleLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
