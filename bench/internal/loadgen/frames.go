package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
)

// maskKey is the masking key of every client frame. RFC 6455 wants it
// unpredictable to defend proxies against cache poisoning; on loopback between
// our own processes a fixed key lets every frame be built once, and the server
// still unmasks every byte.
var maskKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// Payload returns n bytes of chat-like JSON text: compressible the way real
// messages are, and valid UTF-8.
func Payload(n int) []byte { return PayloadSeed(n, int64(n)) }

// PayloadSeed is Payload with its own random seed: same kind of text, other words.
func PayloadSeed(n int, seed int64) []byte {
	r := rand.New(rand.NewSource(seed))
	words := []string{"hello", "room", "message", "ok", "typing", "the", "quick", "brown", "fox",
		"jumps", "over", "lazy", "dog", "websocket", "duplex", "frame", "ping", "pong", "chat", "user"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, `{"id":%d,"user":"u%d","text":"`, r.Intn(1000000), r.Intn(5000))
		for i := 0; i < 3+r.Intn(12); i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[r.Intn(len(words))])
		}
		b.WriteString("\"}\n")
	}
	return b.Bytes()[:n]
}

// ClientFrame builds a masked client frame (FIN, binary) carrying payload. With
// rsv1 the payload is taken as already deflated (permessage-deflate).
func ClientFrame(payload []byte, rsv1 bool) []byte {
	b0 := byte(0x80 | 0x2)
	if rsv1 {
		b0 |= 0x40
	}
	return clientFrame(b0, payload)
}

// ClientText builds a masked client frame (FIN, text) carrying payload.
func ClientText(payload []byte) []byte { return clientFrame(0x80|0x1, payload) }

func clientFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0}
	n := len(payload)
	switch {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	f = append(f, maskKey[:]...)
	start := len(f)
	f = append(f, payload...)
	for i := range payload {
		f[start+i] ^= maskKey[i&3]
	}
	return f
}

// TCPFrame builds a length-prefixed message for the TCP floor.
func TCPFrame(payload []byte) []byte {
	f := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	return append(f, payload...)
}

// wsHeaderLen is the length of a frame header whose second byte is b1.
func wsHeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}
