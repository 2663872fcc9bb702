package websocket

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strings"
)

// The handshake's headers as net/http keys them (textproto's canonical
// form, "Websocket"): a lookup by the RFC's spelling would canonicalize it
// into a new string every time.
const (
	headerKey        = "Sec-Websocket-Key"
	headerVersion    = "Sec-Websocket-Version"
	headerProtocol   = "Sec-Websocket-Protocol"
	headerExtensions = "Sec-Websocket-Extensions"
	headerAccept     = "Sec-Websocket-Accept"
)

// keyGUID is the fixed string of RFC 6455 §1.3 that the accept digest mixes
// into the client's key.
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string { return string(appendAcceptKey(nil, key)) }

// appendAcceptKey appends Sec-WebSocket-Accept for key to dst. A valid key
// (24 characters) is hashed from the stack, so that a server's handshake
// allocates nothing for it.
func appendAcceptKey(dst []byte, key string) []byte {
	var in [24 + len(keyGUID)]byte
	msg := append(in[:0], key...)
	msg = append(msg, keyGUID...)
	sum := sha1.Sum(msg)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// validKey reports whether key is base64 of 16 bytes (RFC 6455 §4.2.1).
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(b) == 16
}

// ows is the optional whitespace around the elements of a header's value
// (RFC 7230 §3.2.3): spaces and tabs only. strings.TrimSpace would also
// take a form feed or a vertical tab for blank, and accept a token that is
// not one.
const ows = " \t"

// headerTokens splits every value of a comma-separated header into trimmed,
// non-empty tokens.
func headerTokens(h http.Header, name string) []string {
	var tokens []string
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.Trim(t, ows); t != "" {
				tokens = append(tokens, t)
			}
		}
	}
	return tokens
}

// headerHasToken reports whether a comma-separated header holds token,
// compared case-insensitively (RFC 7230 §6.1, §6.7).
func headerHasToken(h http.Header, name, token string) bool {
	for _, t := range headerTokens(h, name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// validToken reports whether s is an RFC 7230 token, the form subprotocol
// names must take (RFC 6455 §4.1).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7F || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
