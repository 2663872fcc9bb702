package websocket

import (
	"net/http"
	"testing"
)

func TestParseExtensions(t *testing.T) {
	h := http.Header{}
	h.Add("Sec-WebSocket-Extensions", `permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits="10"`)
	h.Add("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")
	exts, ok := parseExtensions(h)
	if !ok || len(exts) != 3 {
		t.Fatalf("got %+v %v", exts, ok)
	}
	if p := exts[1].params[0]; p.name != "server_max_window_bits" || p.value != "10" || !p.hasValue {
		t.Fatalf("quoted value: %+v", p)
	}
	if exts[0].params[0].hasValue || exts[2].name != "x-webkit-deflate-frame" {
		t.Fatalf("got %+v", exts)
	}
	for _, bad := range []string{"permessage-deflate;", "a; b=", `a; b="c`, "a b", `a; b="x y"`} {
		h := http.Header{"Sec-Websocket-Extensions": {bad}}
		if _, ok := parseExtensions(h); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestServerDeflateNegotiation(t *testing.T) {
	cases := []struct {
		offer string
		opts  CompressionOptions
		resp  string // "" = declined
		p     deflateParams
	}{
		// Chromium's offer, default options: bound the client's window.
		{"permessage-deflate; client_max_window_bits", CompressionOptions{},
			"permessage-deflate; client_max_window_bits=13",
			deflateParams{sendWindowBits: 15, recvWindowBits: 13}},
		// Full windows allowed.
		{"permessage-deflate; client_max_window_bits", CompressionOptions{MaxWindowBits: 15},
			"permessage-deflate",
			deflateParams{sendWindowBits: 15, recvWindowBits: 15}},
		// A client that cannot shrink its window is asked not to keep context.
		{"permessage-deflate", CompressionOptions{},
			"permessage-deflate; client_no_context_takeover",
			deflateParams{recvNoTakeover: true, sendWindowBits: 15, recvWindowBits: 15}},
		{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10", CompressionOptions{MaxWindowBits: 15},
			"permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_no_context_takeover",
			deflateParams{sendNoTakeover: true, recvNoTakeover: true, sendWindowBits: 9, recvWindowBits: 15}},
		{"permessage-deflate; client_max_window_bits=8", CompressionOptions{MaxWindowBits: 15},
			"permessage-deflate; client_max_window_bits=8",
			deflateParams{sendWindowBits: 15, recvWindowBits: 8}},
		{"permessage-deflate", CompressionOptions{NoContextTakeover: true, MaxWindowBits: 15},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
			deflateParams{sendNoTakeover: true, recvNoTakeover: true, sendWindowBits: 15, recvWindowBits: 15}},
		// The first acceptable offer wins; invalid ones are skipped.
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate; foo, permessage-deflate; server_max_window_bits=12", CompressionOptions{MaxWindowBits: 15},
			"permessage-deflate; server_max_window_bits=12",
			deflateParams{sendWindowBits: 12, recvWindowBits: 15}},
		{"permessage-deflate; server_max_window_bits", CompressionOptions{}, "", deflateParams{}},
		{"permessage-deflate; client_max_window_bits=16", CompressionOptions{}, "", deflateParams{}},
		{"permessage-deflate; client_max_window_bits=010", CompressionOptions{}, "", deflateParams{}},
		{"permessage-deflate; server_no_context_takeover=1", CompressionOptions{}, "", deflateParams{}},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", CompressionOptions{}, "", deflateParams{}},
		{"x-webkit-deflate-frame", CompressionOptions{}, "", deflateParams{}},
		{"permessage-deflate", CompressionOptions{Disabled: true}, "", deflateParams{}},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		r.Header.Set("Sec-WebSocket-Extensions", tc.offer)
		resp, d := negotiateServerCompression(r, &tc.opts)
		if resp != tc.resp {
			t.Errorf("offer %q %+v: response %q, want %q", tc.offer, tc.opts, resp, tc.resp)
			continue
		}
		if tc.resp != "" && d.params != tc.p {
			t.Errorf("offer %q: params %+v, want %+v", tc.offer, d.params, tc.p)
		}
		if tc.resp == "" && d != nil {
			t.Errorf("offer %q: declined but state made", tc.offer)
		}
	}
}

func TestClientDeflateNegotiation(t *testing.T) {
	cases := []struct {
		resp string
		opts CompressionOptions
		ok   bool
		p    deflateParams
	}{
		{"permessage-deflate", CompressionOptions{MaxWindowBits: 15}, true, deflateParams{sendWindowBits: 15, recvWindowBits: 15}},
		{"permessage-deflate; client_max_window_bits=9; server_no_context_takeover", CompressionOptions{MaxWindowBits: 15}, true,
			deflateParams{recvNoTakeover: true, sendWindowBits: 9, recvWindowBits: 15}},
		{"permessage-deflate; client_no_context_takeover; server_max_window_bits=10", CompressionOptions{}, true,
			deflateParams{sendNoTakeover: true, sendWindowBits: 15, recvWindowBits: 10}},
		// Answers to the second, plain offer.
		{"permessage-deflate; server_max_window_bits=14", CompressionOptions{}, true, deflateParams{sendWindowBits: 15, recvWindowBits: 14}},
		{"permessage-deflate", CompressionOptions{}, true, deflateParams{sendWindowBits: 15, recvWindowBits: 15}},
		{"permessage-deflate; server_no_context_takeover; client_no_context_takeover", CompressionOptions{}, true,
			deflateParams{sendNoTakeover: true, recvNoTakeover: true, sendWindowBits: 15, recvWindowBits: 15}},
		{"permessage-deflate; client_max_window_bits", CompressionOptions{MaxWindowBits: 15}, false, deflateParams{}}, // needs a value
		{"permessage-deflate; bogus", CompressionOptions{}, false, deflateParams{}},
		{"permessage-deflate, permessage-deflate", CompressionOptions{}, false, deflateParams{}},
		{"x-other", CompressionOptions{}, false, deflateParams{}},
		{"permessage-deflate; server_max_window_bits=10", CompressionOptions{NoContextTakeover: true}, false, deflateParams{}},
		{"permessage-deflate", CompressionOptions{Disabled: true}, false, deflateParams{}},
	}
	for _, tc := range cases {
		h := http.Header{"Sec-Websocket-Extensions": {tc.resp}}
		d, why := negotiateClientCompression(h, &tc.opts)
		if (why == "") != tc.ok {
			t.Errorf("response %q %+v: error %q, want ok %v", tc.resp, tc.opts, why, tc.ok)
			continue
		}
		if tc.ok && d.params != tc.p {
			t.Errorf("response %q: params %+v, want %+v", tc.resp, d.params, tc.p)
		}
	}
}

func TestClientDeflateOffer(t *testing.T) {
	for _, tc := range []struct {
		opts CompressionOptions
		want string
	}{
		{CompressionOptions{}, "permessage-deflate; client_max_window_bits=13; server_max_window_bits=13, permessage-deflate; client_max_window_bits"},
		{CompressionOptions{MaxWindowBits: 15}, "permessage-deflate; client_max_window_bits"},
		{CompressionOptions{MaxWindowBits: 15, NoContextTakeover: true}, "permessage-deflate; client_max_window_bits; client_no_context_takeover; server_no_context_takeover"},
	} {
		if got := offerDeflate(&tc.opts); got != tc.want {
			t.Errorf("%+v: offer %q, want %q", tc.opts, got, tc.want)
		}
		// Our own server must accept the offer.
		r, _ := http.NewRequest("GET", "http://x/", nil)
		r.Header.Set("Sec-WebSocket-Extensions", offerDeflate(&tc.opts))
		if resp, _ := negotiateServerCompression(r, &tc.opts); resp == "" {
			t.Errorf("%+v: our server declines our offer", tc.opts)
		}
	}
}
