package websocket

import (
	"net/http"
	"strconv"
	"strings"
)

// deflateParams are the negotiated parameters of permessage-deflate
// (RFC 7692 §7.1), from this side's point of view.
type deflateParams struct {
	sendNoTakeover bool // compress each message on its own
	recvNoTakeover bool // the peer compresses each message on its own
	sendWindowBits int  // the LZ77 window this side may use
	recvWindowBits int  // the window the peer may use: the history kept to inflate
}

// deflateOffer is a permessage-deflate offer or response, parsed and checked.
type deflateOffer struct {
	serverNoTakeover, clientNoTakeover bool
	serverMaxBits                      int // 0: absent
	clientMaxBits                      int // 0: absent; -1: present without a value
}

// parseDeflateParams checks the parameters of one permessage-deflate
// element: known names, no duplicates, window bits 8 to 15.
func parseDeflateParams(params []extensionParam) (deflateOffer, bool) {
	var o deflateOffer
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.name] {
			return o, false
		}
		seen[p.name] = true
		switch p.name {
		case "server_no_context_takeover":
			if p.hasValue {
				return o, false
			}
			o.serverNoTakeover = true
		case "client_no_context_takeover":
			if p.hasValue {
				return o, false
			}
			o.clientNoTakeover = true
		case "server_max_window_bits":
			bits, ok := windowBits(p)
			if !ok || bits < 0 {
				return o, false
			}
			o.serverMaxBits = bits
		case "client_max_window_bits":
			bits, ok := windowBits(p)
			if !ok {
				return o, false
			}
			o.clientMaxBits = bits
		default:
			return o, false
		}
	}
	return o, true
}

// windowBits reads a window size parameter: -1 when it has no value.
func windowBits(p extensionParam) (int, bool) {
	if !p.hasValue {
		return -1, true
	}
	if len(p.value) == 0 || len(p.value) > 2 || p.value[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(p.value)
	return n, err == nil && n >= 8 && n <= 15
}

// acceptDeflate answers the first permessage-deflate offer this server can
// honour (RFC 7692 §5.1). It returns the response header value and the
// parameters, or ok false to decline compression.
func acceptDeflate(exts []extension, co *CompressionOptions) (response string, p deflateParams, ok bool) {
	maxBits := co.maxWindowBits()
	for _, ext := range exts {
		if ext.name != "permessage-deflate" {
			continue
		}
		o, valid := parseDeflateParams(ext.params)
		if !valid {
			continue // decline this offer, consider the next
		}
		var resp []string
		// The server's own window stays 15 unless the client asks for less:
		// a custom window needs klauspost's slower windowed encoder, and
		// the history kept for context takeover is bounded by MaxWindowBits
		// anyway (a shorter history than the window is always valid).
		p = deflateParams{sendWindowBits: 15, recvWindowBits: 15}

		if o.serverNoTakeover || co.NoContextTakeover {
			p.sendNoTakeover = true
			resp = append(resp, "server_no_context_takeover")
		}
		if o.serverMaxBits > 0 {
			p.sendWindowBits = o.serverMaxBits
			resp = append(resp, "server_max_window_bits="+strconv.Itoa(p.sendWindowBits))
		}

		p.recvNoTakeover = o.clientNoTakeover || co.NoContextTakeover
		switch {
		case p.recvNoTakeover:
		case o.clientMaxBits != 0:
			// The client can shrink its window: bound the history we keep.
			p.recvWindowBits = maxBits
			if o.clientMaxBits > 0 {
				p.recvWindowBits = min(o.clientMaxBits, maxBits)
			}
			if p.recvWindowBits < 15 || o.clientMaxBits > 0 {
				resp = append(resp, "client_max_window_bits="+strconv.Itoa(p.recvWindowBits))
			}
		case maxBits < 15:
			// The client cannot shrink its window; rather than keep a full
			// window of history, ask it not to keep context.
			p.recvNoTakeover = true
		}
		if p.recvNoTakeover {
			resp = append(resp, "client_no_context_takeover")
		}
		return strings.Join(append([]string{"permessage-deflate"}, resp...), "; "), p, true
	}
	return "", deflateParams{}, false
}

// offerDeflate is the client's offer. With a window bound below 15 it
// makes two: the bounded one first, then the one browsers send, because some
// servers (gorilla's, for one) cannot honour server_max_window_bits and would
// otherwise answer wrongly or decline compression.
func offerDeflate(co *CompressionOptions) string {
	suffix := ""
	if co != nil && co.NoContextTakeover {
		suffix = "; client_no_context_takeover; server_no_context_takeover"
	}
	plain := "permessage-deflate; client_max_window_bits" + suffix
	if bits := co.maxWindowBits(); bits < 15 {
		b := strconv.Itoa(bits)
		return "permessage-deflate; client_max_window_bits=" + b + "; server_max_window_bits=" + b + suffix + ", " + plain
	}
	return plain
}

// checkDeflateResponse checks the server's choice against the client's
// offer (RFC 7692 §5.1, §7.1): anything else fails the connection.
func checkDeflateResponse(exts []extension, co *CompressionOptions) (deflateParams, string) {
	if len(exts) != 1 || exts[0].name != "permessage-deflate" {
		return deflateParams{}, "the server chose extensions that were not offered"
	}
	o, valid := parseDeflateParams(exts[0].params)
	if !valid {
		return deflateParams{}, "the server's permessage-deflate parameters are invalid"
	}
	p := deflateParams{
		sendNoTakeover: o.clientNoTakeover || co.NoContextTakeover,
		recvNoTakeover: o.serverNoTakeover,
		sendWindowBits: 15, // unless the server asks for less; history is bounded apart
		recvWindowBits: 15,
	}
	if co.NoContextTakeover && !o.serverNoTakeover {
		return p, "the server refused server_no_context_takeover"
	}
	switch {
	case o.clientMaxBits < 0:
		return p, "the server sent client_max_window_bits without a value"
	case o.clientMaxBits > 0:
		p.sendWindowBits = o.clientMaxBits
	}
	if o.serverMaxBits > 0 {
		// Either our bounded offer, answered with its bound or less, or the
		// plain one, where the server may announce any smaller window.
		p.recvWindowBits = o.serverMaxBits
	}
	return p, ""
}

// negotiateServerCompression answers the request's permessage-deflate offers.
// It returns the response header value ("" to decline) and the state of an
// accepted offer. A malformed extensions header declines compression
// rather than failing the handshake: the connection works without it.
func negotiateServerCompression(r *http.Request, co *CompressionOptions) (string, *deflater) {
	if !co.enabled() {
		return "", nil
	}
	if co == nil {
		co = &CompressionOptions{}
	}
	exts, ok := parseExtensions(r.Header)
	if !ok {
		return "", nil
	}
	resp, p, ok := acceptDeflate(exts, co)
	if !ok {
		return "", nil
	}
	return resp, newDeflater(p, co)
}

// negotiateClientCompression checks the server's answer to the client's
// offer; an answer the client did not offer fails the handshake.
func negotiateClientCompression(h http.Header, co *CompressionOptions) (*deflater, string) {
	if len(h.Values(headerExtensions)) == 0 {
		return nil, ""
	}
	exts, ok := parseExtensions(h)
	if !ok {
		return nil, "the server's Sec-WebSocket-Extensions header is malformed"
	}
	if !co.enabled() {
		return nil, "the server chose extensions that were not offered"
	}
	if co == nil {
		co = &CompressionOptions{}
	}
	p, why := checkDeflateResponse(exts, co)
	if why != "" {
		return nil, why
	}
	return newDeflater(p, co), ""
}
