package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserChatHTTP2 opens the chat page in headless Chromium over HTTPS
// with the development certificate (certificate errors ignored in this test
// browser). Chromium sees SETTINGS_ENABLE_CONNECT_PROTOCOL on the page's
// HTTP/2 connection and opens the WebSocket on it with an extended CONNECT
// (RFC 8441), which the server logs as CONNECT /chat/connect HTTP/2.0; the
// chat echoes over it.
func TestBrowserChatHTTP2(t *testing.T) {
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-tls"}, map[string]string{"DUPLEX_LOG_LEVEL": "debug"})
	pageURL := "https://" + srv.addr + "/chat/echo"

	browserCtx, cancelBrowser := startBrowser(t, 2*time.Minute,
		// The development certificate is self-signed.
		chromedp.Flag("ignore-certificate-errors", true))
	console := recordConsole(t, browserCtx)
	defer func() {
		if t.Failed() {
			t.Logf("browser console:\n%s", console)
			t.Logf("server log:\n%s", srv.logs)
		}
	}()
	step := func(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browserCtx, timeout)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	step("opening the page over https", 30*time.Second,
		chromedp.Navigate(pageURL),
		chromedp.WaitEnabled(chromedp.CSS("#chat")),
	)
	step("typing a message", 10*time.Second, chromedp.SendKeys(chromedp.CSS("#chat"), "hello over HTTP/2\r"))
	echoed := fmt.Sprintf(`[...document.querySelectorAll("#response pre")].some(p => p.textContent === %s)`,
		strconv.Quote("Echo: hello over HTTP/2"))
	step("waiting for the echo", 10*time.Second, chromedp.Poll[chromedp.Void](echoed,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))

	t.Logf("the server saw:\n%s", strings.Join(srv.logs.linesWith("msg=request"), "\n"))
	if n := len(srv.logs.linesWith("msg=request", "path=/chat/echo", "proto=HTTP/2.0")); n != 1 {
		t.Errorf("the page was fetched over HTTP/2 %d times, want 1", n)
	}
	if n := len(srv.logs.linesWith("msg=request", "method=CONNECT", "path=/chat/connect", "proto=HTTP/2.0")); n != 1 {
		t.Errorf("%d WebSockets opened with an HTTP/2 extended CONNECT, want 1", n)
	}
	if n := len(srv.logs.linesWith("msg=request", "path=/chat/connect", "proto=HTTP/1.1")); n != 0 {
		t.Errorf("%d WebSockets opened over HTTP/1.1, want 0", n)
	}
	if n := len(srv.logs.linesWith("websocket opened")); n != 1 {
		t.Errorf("%d 'websocket opened' lines, want 1", n)
	}

	cancelBrowser()
}
