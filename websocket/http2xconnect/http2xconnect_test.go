package http2xconnect_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	_ "github.com/duplexws/duplex/websocket/http2xconnect"
)

// TestServerAllowsExtendedConnect shows that net/http read the setting: its
// HTTP/2 server advertises extended CONNECT and passes one to the handler.
func TestServerAllowsExtendedConnect(t *testing.T) {
	if !strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
		t.Fatalf("GODEBUG = %q, want http2xconnect=1", os.Getenv("GODEBUG"))
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Header.Get(":protocol") != "websocket" {
			http.Error(w, "want an extended CONNECT", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	// http.Transport refuses :protocol; its HTTP/2 RoundTripper, reached
	// through TLSNextProto, sends it (see package websocket's http2_dial.go).
	tr := srv.Client().Transport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	tr.CloseIdleConnections() // sets up HTTP/2
	tc, err := tls.Dial("tcp", srv.Listener.Addr().String(), tr.TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	rt := tr.TLSNextProto["h2"](srv.Listener.Addr().String(), tc)
	req, _ := http.NewRequest(http.MethodConnect, srv.URL+"/", http.NoBody)
	req.Header[":protocol"] = []string{"websocket"}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("extended CONNECT: %v (does net/http run with it off?)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("extended CONNECT: %s %s", resp.Status, body)
	}
}

// The package runs before net/http's init only while its path sorts before
// "net/http".
func TestPathSortsBeforeNetHTTP(t *testing.T) {
	const path = "github.com/duplexws/duplex/websocket/http2xconnect"
	if path >= "net/http" {
		t.Fatalf("%s sorts after net/http: its init would run too late", path)
	}
}
