package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

func TestParseTLSConfig(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want tlsOptions
	}{
		{"off by default", nil, nil, tlsOptions{}},
		{"-tls", []string{"-tls"}, nil, tlsOptions{enabled: true}},
		{"env", nil, map[string]string{"DUPLEX_TLS": "true"}, tlsOptions{enabled: true}},
		{"flag wins over env", []string{"-tls=false"}, map[string]string{"DUPLEX_TLS": "1"}, tlsOptions{}},
		{"cert and key imply -tls", []string{"-cert", "c.pem", "-key", "k.pem"}, nil, tlsOptions{enabled: true, certFile: "c.pem", keyFile: "k.pem"}},
		{"cert and key from env", nil, map[string]string{"DUPLEX_CERT": "c.pem", "DUPLEX_KEY": "k.pem"}, tlsOptions{enabled: true, certFile: "c.pem", keyFile: "k.pem"}},
		{"h2c", []string{"-h2c"}, nil, tlsOptions{h2c: true}},
		{"h2c from env", nil, map[string]string{"DUPLEX_H2C": "1"}, tlsOptions{h2c: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got.tls != tc.want {
				t.Errorf("tls options = %+v, want %+v", got.tls, tc.want)
			}
		})
	}

	errCases := []struct {
		name    string
		args    []string
		env     map[string]string
		mention string
	}{
		{"cert without key", []string{"-cert", "c.pem"}, nil, "-key"},
		{"key without cert in env", nil, map[string]string{"DUPLEX_KEY": "k.pem"}, "-cert"},
		{"h2c with tls", []string{"-tls", "-h2c"}, nil, "-h2c"},
		{"bad DUPLEX_TLS", nil, map[string]string{"DUPLEX_TLS": "yes please"}, "DUPLEX_TLS"},
		{"bad DUPLEX_H2C", nil, map[string]string{"DUPLEX_H2C": "on"}, "DUPLEX_H2C"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %v, want a usageError that mentions %q", err, tc.mention)
			}
		})
	}

	var out strings.Builder
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, want := range []string{"-tls", "-cert", "-key", "-h2c", "DUPLEX_TLS", "DUPLEX_CERT", "DUPLEX_KEY", "DUPLEX_H2C"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %s:\n%s", want, out.String())
		}
	}
}

// Go's HTTP/2 clients hold a write buffer per stream as big as the
// server's largest frame; duplex keeps that at HTTP/2's 16 KiB.
func TestSetupTLSFrameSize(t *testing.T) {
	for _, o := range []tlsOptions{{enabled: true}, {h2c: true}} {
		srv := &http.Server{}
		if _, err := setupTLS(srv, o, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		if srv.HTTP2 == nil || srv.HTTP2.MaxReadFrameSize != 16<<10 {
			t.Errorf("%+v: HTTP2 config %+v, want MaxReadFrameSize 16 KiB", o, srv.HTTP2)
		}
	}
}

var loggedFingerprint = regexp.MustCompile(`sha256=([0-9A-F:]{95})`)

// servedCertificate does a TLS handshake with addr and returns the
// certificate it is shown.
func servedCertificate(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// trustingClient trusts cert and speaks HTTP/2.
func trustingClient(t *testing.T, cert *x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// TestRunTLS serves with a development certificate: its logged fingerprint
// is the served one, the chat's WebSocket opens over HTTP/2 (and over
// HTTP/1.1 when asked), and shutdown closes it with 1001.
func TestRunTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-tls"}, map[string]string{"DUPLEX_LOG_LEVEL": "debug"})
	if len(srv.logs.linesWith("msg=listening", "scheme=https")) != 1 {
		t.Errorf("no listening line with scheme=https:\n%s", srv.logs)
	}
	cert := servedCertificate(t, srv.addr)
	m := loggedFingerprint.FindStringSubmatch(srv.logs.String())
	if m == nil || m[1] != fingerprint(cert.Raw) {
		t.Fatalf("logged fingerprint %v, served certificate's %s:\n%s", m, fingerprint(cert.Raw), srv.logs)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Errorf("the development certificate: %v", err)
	}
	client := trustingClient(t, cert)

	resp, err := client.Get("https://" + srv.addr + "/chat/index")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /chat/index: %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}

	origin := http.Header{"Origin": {"https://" + srv.addr}}
	h2, resp, err := websocket.Dial(ctx, "wss://"+srv.addr+"/chat/connect", &websocket.DialOptions{HTTPClient: client, Header: origin})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.CloseNow()
	if resp.ProtoMajor != 2 {
		t.Errorf("the WebSocket opened over %s, want HTTP/2", resp.Proto)
	}
	echo(t, ctx, h2, "over HTTP/2")
	h1, resp, err := websocket.Dial(ctx, "wss://"+srv.addr+"/chat/connect",
		&websocket.DialOptions{HTTPClient: client, Header: origin, HTTPVersion: websocket.HTTP1})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.CloseNow()
	if resp.ProtoMajor != 1 {
		t.Errorf("the forced HTTP/1.1 WebSocket opened over %s", resp.Proto)
	}
	echo(t, ctx, h1, "over HTTP/1.1")
	if n := len(srv.logs.linesWith("msg=request", "method=CONNECT", "path=/chat/connect", "proto=HTTP/2.0")); n != 1 {
		t.Errorf("%d extended CONNECT requests logged, want 1:\n%s", n, srv.logs)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()
	wantGoingAway(t, ctx, h2)
	wantGoingAway(t, ctx, h1)
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v after a graceful shutdown, want nil", err)
	}
}

// TestRunTLSCertFiles serves the certificate of -cert and -key.
func TestRunTLSCertFiles(t *testing.T) {
	cert, err := devCertificate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Leaf.Raw}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	srv := startRun(t, []string{"-addr", "127.0.0.1:0"}, map[string]string{"DUPLEX_CERT": certFile, "DUPLEX_KEY": keyFile})
	if got := servedCertificate(t, srv.addr); fingerprint(got.Raw) != fingerprint(cert.Leaf.Raw) {
		t.Fatal("the server does not serve the certificate of -cert")
	}
	if len(srv.logs.linesWith("tls certificate", "sha256="+fingerprint(cert.Leaf.Raw))) != 1 {
		t.Errorf("the certificate is not logged with its fingerprint:\n%s", srv.logs)
	}

	// A missing file is an error at start.
	err = run(t.Context(), []string{"-addr", "127.0.0.1:0", "-data-dir", t.TempDir(), "-cert", filepath.Join(dir, "none.pem"), "-key", keyFile},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "none.pem") {
		t.Errorf("run with a missing certificate: %v", err)
	}
}

// TestRunH2C speaks cleartext HTTP/2 to a client with prior knowledge, and
// HTTP/1.1 to others.
func TestRunH2C(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := startRun(t, []string{"-addr", "127.0.0.1:0", "-h2c"}, nil)
	origin := http.Header{"Origin": {"http://" + srv.addr}}
	c, resp, err := websocket.Dial(ctx, "ws://"+srv.addr+"/chat/connect", &websocket.DialOptions{Header: origin, HTTPVersion: websocket.HTTP2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.ProtoMajor != 2 {
		t.Errorf("the h2c WebSocket opened over %s", resp.Proto)
	}
	echo(t, ctx, c, "over h2c")
	c.Close(websocket.StatusNormalClosure, "")
	c = dialChat(t, ctx, srv.addr)
	echo(t, ctx, c, "over HTTP/1.1")
}
