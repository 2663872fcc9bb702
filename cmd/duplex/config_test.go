package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/websocket"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want config
	}{
		{"defaults", nil, nil, config{addr: ":9292", logLevel: slog.LevelInfo, maxConns: defaultMaxConnections}},
		{
			"max connections from env",
			nil,
			map[string]string{"DUPLEX_MAX_CONNECTIONS": "500"},
			config{addr: ":9292", logLevel: slog.LevelInfo, maxConns: 500},
		},
		{
			"max connections flag wins over env; 0 is no cap",
			[]string{"-max-connections", "0"},
			map[string]string{"DUPLEX_MAX_CONNECTIONS": "500"},
			config{addr: ":9292", logLevel: slog.LevelInfo, maxConns: 0},
		},
		{
			"env",
			nil,
			map[string]string{"DUPLEX_ADDR": "127.0.0.1:1", "DUPLEX_ALLOWED_ORIGINS": "a.example, *.b.example,", "DUPLEX_LOG_LEVEL": "debug"},
			config{addr: "127.0.0.1:1", allowedOrigins: []string{"a.example", "*.b.example"}, logLevel: slog.LevelDebug},
		},
		{
			"flags win over env",
			[]string{"-addr", ":2", "-allowed-origins", "http://localhost:*", "-log-level", "WARN"},
			map[string]string{"DUPLEX_ADDR": "127.0.0.1:1", "DUPLEX_ALLOWED_ORIGINS": "a.example", "DUPLEX_LOG_LEVEL": "debug"},
			config{addr: ":2", allowedOrigins: []string{"http://localhost:*"}, logLevel: slog.LevelWarn},
		},
		{
			"an empty flag wins over env too",
			[]string{"-allowed-origins="},
			map[string]string{"DUPLEX_ALLOWED_ORIGINS": "a.example"},
			config{addr: ":9292", logLevel: slog.LevelInfo},
		},
		{"error level", []string{"-log-level=error"}, nil, config{addr: ":9292", logLevel: slog.LevelError}},
		{
			"shutdown code and drain from env",
			nil,
			map[string]string{"DUPLEX_SHUTDOWN_CODE": "service-restart", "DUPLEX_DRAIN": "2s"},
			config{addr: ":9292", logLevel: slog.LevelInfo, shutdownCode: websocket.StatusServiceRestart, drain: 2 * time.Second},
		},
		{
			"shutdown code and drain flags win over env",
			[]string{"-shutdown-code", "going-away", "-drain", "1500ms"},
			map[string]string{"DUPLEX_SHUTDOWN_CODE": "service-restart", "DUPLEX_DRAIN": "2s"},
			config{addr: ":9292", logLevel: slog.LevelInfo, shutdownCode: websocket.StatusGoingAway, drain: 1500 * time.Millisecond},
		},
		{"event loop", []string{"-event-loop"}, nil, config{addr: ":9292", logLevel: slog.LevelInfo, eventLoop: true}},
		{"event loop from env", nil, map[string]string{"DUPLEX_EVENT_LOOP": "true"}, config{addr: ":9292", logLevel: slog.LevelInfo, eventLoop: true}},
		{
			"event loop flag wins over env",
			[]string{"-event-loop=false"},
			map[string]string{"DUPLEX_EVENT_LOOP": "1"},
			config{addr: ":9292", logLevel: slog.LevelInfo},
		},
		{
			"shutdown code by number",
			[]string{"-shutdown-code=1012"},
			nil,
			config{addr: ":9292", logLevel: slog.LevelInfo, shutdownCode: websocket.StatusServiceRestart},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.shutdownCode == 0 {
				tc.want.shutdownCode = websocket.StatusGoingAway // the default
			}
			if tc.want.maxConns == 0 && !strings.Contains(tc.name, "max connections") {
				tc.want.maxConns = defaultMaxConnections
			}
			if got.addr != tc.want.addr || got.logLevel != tc.want.logLevel || !slices.Equal(got.allowedOrigins, tc.want.allowedOrigins) ||
				got.shutdownCode != tc.want.shutdownCode || got.drain != tc.want.drain || got.maxConns != tc.want.maxConns ||
				got.eventLoop != tc.want.eventLoop {
				t.Errorf("parseConfig = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestParseConfigHandshake: the handshake flags and their environment
// twins; by default the header timeout is the websocket package's own
// handshake timeout, so that the HTTP server and the WebSocket handshake
// bound a client alike, and there is no rate limit.
func TestParseConfigHandshake(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want handshakeOptions
	}{
		{"defaults", nil, nil, handshakeOptions{timeout: websocket.DefaultHandshakeTimeout}},
		{"env", nil, map[string]string{"DUPLEX_HANDSHAKE_TIMEOUT": "3s", "DUPLEX_HANDSHAKE_RATE": "0.5",
			"DUPLEX_HANDSHAKE_BURST": "4", "DUPLEX_CLIENT_IP_HEADER": "x-forwarded-for"},
			handshakeOptions{timeout: 3 * time.Second, rate: 0.5, burst: 4, clientIPHeader: "X-Forwarded-For"}},
		{"flags win over env", []string{"-handshake-timeout", "2500ms", "-handshake-rate", "20", "-handshake-burst", "0"},
			map[string]string{"DUPLEX_HANDSHAKE_TIMEOUT": "3s", "DUPLEX_HANDSHAKE_RATE": "0.5", "DUPLEX_HANDSHAKE_BURST": "4"},
			handshakeOptions{timeout: 2500 * time.Millisecond, rate: 20}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got.handshake != tc.want {
				t.Errorf("handshake options %+v, want %+v", got.handshake, tc.want)
			}
		})
	}
}

// TestClientAddrFrom: the address a proxy added last wins over what the
// client put before it; a request without one is limited by RemoteAddr.
func TestClientAddrFrom(t *testing.T) {
	addr := clientAddrFrom("X-Forwarded-For")
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{nil, "10.0.0.1"},
		{[]string{"198.51.100.7"}, "198.51.100.7"},
		{[]string{"1.2.3.4, 198.51.100.7"}, "198.51.100.7"},
		{[]string{"1.2.3.4", "2001:db8::1"}, "2001:db8::1"},
		{[]string{"198.51.100.7, garbage"}, "10.0.0.1"},
	} {
		r := &http.Request{RemoteAddr: "10.0.0.1:4000", Header: http.Header{"X-Forwarded-For": tc.values}}
		if got := addr(r); got != tc.want {
			t.Errorf("X-Forwarded-For %q: client %q, want %q", tc.values, got, tc.want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		mention string
	}{
		{"bad level", []string{"-log-level", "loud"}, nil, "loud"},
		{"bad level in env", nil, map[string]string{"DUPLEX_LOG_LEVEL": "trace"}, "trace"},
		{"bad pattern", []string{"-allowed-origins", "[a-"}, nil, "[a-"},
		{"unknown flag", []string{"-port", "1"}, nil, "port"},
		{"stray argument", []string{"serve"}, nil, "serve"},
		{"bad shutdown code", []string{"-shutdown-code", "restart"}, nil, "restart"},
		{"bad shutdown code in env", nil, map[string]string{"DUPLEX_SHUTDOWN_CODE": "1000"}, "1000"},
		{"bad drain", []string{"-drain", "soon"}, nil, "soon"},
		{"drain without a unit", nil, map[string]string{"DUPLEX_DRAIN": "5"}, `"5"`},
		{"negative drain", []string{"-drain", "-1s"}, nil, "negative"},
		{"drain as long as the shutdown timeout", []string{"-drain", shutdownTimeout.String()}, nil, "shutdown timeout"},
		{"negative max connections", []string{"-max-connections", "-1"}, nil, "-max-connections"},
		{"bad DUPLEX_EVENT_LOOP", nil, map[string]string{"DUPLEX_EVENT_LOOP": "on"}, "DUPLEX_EVENT_LOOP"},
		{"max connections not a number", nil, map[string]string{"DUPLEX_MAX_CONNECTIONS": "lots"}, "lots"},
		{"zero handshake timeout", []string{"-handshake-timeout", "0s"}, nil, "-handshake-timeout"},
		{"handshake timeout without a unit", nil, map[string]string{"DUPLEX_HANDSHAKE_TIMEOUT": "3"}, `"3"`},
		{"negative handshake rate", []string{"-handshake-rate", "-1"}, nil, "-handshake-rate"},
		{"handshake rate not a number", nil, map[string]string{"DUPLEX_HANDSHAKE_RATE": "NaN"}, "NaN"},
		{"negative handshake burst", []string{"-handshake-rate", "1", "-handshake-burst", "-2"}, nil, "-handshake-burst"},
		{"client IP header without a rate", []string{"-client-ip-header", "X-Real-IP"}, nil, "-handshake-rate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.As(err, new(usageError)) {
				t.Errorf("error %v is not a usageError", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	_, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig -h: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-addr", "-allowed-origins", "-log-level", "-shutdown-code", "-drain", "-max-connections",
		"-handshake-timeout", "-handshake-rate", "-handshake-burst", "-client-ip-header",
		"DUPLEX_HANDSHAKE_TIMEOUT", "DUPLEX_HANDSHAKE_RATE", "DUPLEX_HANDSHAKE_BURST", "DUPLEX_CLIENT_IP_HEADER",
		"DUPLEX_ADDR", "DUPLEX_ALLOWED_ORIGINS", "DUPLEX_LOG_LEVEL", "DUPLEX_SHUTDOWN_CODE", "DUPLEX_DRAIN", "DUPLEX_MAX_CONNECTIONS",
		"-event-loop", "DUPLEX_EVENT_LOOP",
		"/metrics", "/healthz", "/readyz"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %s:\n%s", want, out.String())
		}
	}
}
