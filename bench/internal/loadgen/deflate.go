//go:build linux

package loadgen

import (
	"bytes"
	"compress/flate"
	"strings"
)

// deflateOffer is the client's permessage-deflate offer: each client
// message is deflated on its own, and the server keeps or drops its own
// context as it likes (its answer, kept in Result.Extension, says which).
const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"

// noteExtension counts a handshake answer that accepted permessage-deflate
// and keeps the first such answer's parameters.
func (g *gen) noteExtension(head []byte) {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !strings.EqualFold(string(bytes.TrimSpace(k)), "Sec-WebSocket-Extensions") {
			continue
		}
		if !bytes.Contains(bytes.ToLower(v), []byte("permessage-deflate")) {
			continue
		}
		g.negotiated++
		if g.extension == "" {
			g.extension = string(bytes.TrimSpace(v))
		}
		return
	}
}

// Deflate compresses one message the permessage-deflate way: a raw deflate
// stream ended by a sync flush, without the final 00 00 ff ff.
func Deflate(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	out := b.Bytes()
	return bytes.TrimSuffix(out, []byte{0, 0, 0xff, 0xff})
}

// Inflate reverses Deflate for a message compressed without context.
func Inflate(p []byte) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(append(append([]byte{}, p...), 0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff)))
	var b bytes.Buffer
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}
