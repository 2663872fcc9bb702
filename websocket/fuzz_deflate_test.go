package websocket

import (
	"bytes"
	stdflate "compress/flate"
	"strings"
	"testing"
)

// fuzzReadLimit is the read limit of the fuzzed connections: small, so that
// a decompression bomb costs an execution little before it is refused.
const fuzzReadLimit = 1 << 16

// FuzzReadFramesDeflate feeds arbitrary bytes, as a client would send them,
// to a server connection with permessage-deflate negotiated: RSV1 frames,
// compressed payloads, with context takeover or without, any window. Like
// FuzzReadFrames it must end with a close code of RFC 6455, never panic or
// hang, and no message may pass the read limit: a bomb ends in 1009.
//
// params chooses the negotiated parameters: bit 0 set means the client
// compresses without context takeover, bits 1-3 the client's window
// (8 + value bits).
func FuzzReadFramesDeflate(f *testing.F) {
	for _, params := range []uint8{0, 1, 0x0e, 0x0f} {
		for _, in := range deflateSeeds(f, params&1 != 0) {
			f.Add(in, params)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, params uint8) {
		p := deflateParams{
			sendWindowBits: 15,
			recvNoTakeover: params&1 != 0,
			recvWindowBits: 8 + int(params>>1&7),
		}
		co := &CompressionOptions{MaxWindowBits: 15}
		readUntilClose(t, connConfig{
			t:       &scriptedTransport{in: in},
			opts:    &Options{ReadLimit: fuzzReadLimit, Compression: co},
			deflate: newDeflater(p, co),
		})
	})
}

// deflateSeeds are client streams over a compressed connection: messages
// written by our own client (masked, compressed, fragmented, with or
// without context takeover, so that the second message refers back to the
// first), then an uncompressed one, corrupt data, RSV1 on a continuation and
// on a control frame, and a bomb: 1 MiB of zeros compressed by the standard
// library's flate into about a KiB, past the read limit.
func deflateSeeds(tb testing.TB, noTakeover bool) [][]byte {
	tr := &scriptedTransport{}
	co := &CompressionOptions{Threshold: -1, NoContextTakeover: noTakeover, MaxWindowBits: 15}
	client := newConn(connConfig{t: tr, client: true, opts: &Options{Compression: co},
		deflate: newDeflater(deflateParams{sendNoTakeover: noTakeover, recvNoTakeover: noTakeover, sendWindowBits: 15, recvWindowBits: 15}, co)})
	chat := []byte(strings.Repeat(`{"text":"hello, hello, hello"}`, 4))
	for _, m := range [][]byte{chat, chat, []byte("x")} {
		if err := client.SendText(m); err != nil {
			tb.Fatal(err)
		}
	}
	if err := client.Flush(); err != nil {
		tb.Fatal(err)
	}
	messages := bytes.Clone(tr.out.Bytes())

	frame := func(b0 byte, payload []byte) []byte { // masked with the zero key: the payload as is
		h := frameHeader{fin: b0&bitFIN != 0, rsv: b0 & bitRSV1, opcode: opcode(b0 & 0x0f), masked: true, length: int64(len(payload))}
		return append(appendFrameHeader(nil, h), payload...)
	}
	var compressed bytes.Buffer
	fw, _ := stdflate.NewWriter(&compressed, stdflate.BestCompression)
	fw.Write(chat)
	fw.Flush()
	deflated := bytes.TrimSuffix(compressed.Bytes(), deflateTail)
	fragmented := append(frame(byte(opText)|bitRSV1, deflated[:len(deflated)/2]), frame(bitFIN|byte(opPing), []byte("p"))...)
	fragmented = append(fragmented, frame(bitFIN|byte(opContinuation), deflated[len(deflated)/2:])...)

	compressed.Reset()
	fw.Reset(&compressed)
	fw.Write(make([]byte, 1<<20))
	fw.Flush()
	bomb := frame(bitFIN|byte(opBinary)|bitRSV1, bytes.TrimSuffix(compressed.Bytes(), deflateTail))

	return [][]byte{
		messages,
		fragmented,
		frame(bitFIN|byte(opText), []byte("plain")),
		frame(bitFIN|byte(opBinary)|bitRSV1, []byte{0xff, 0xff, 0xff, 0xff}), // reserved block type: 1007
		append(frame(byte(opText)|bitRSV1, deflated[:3]), frame(bitFIN|byte(opContinuation)|bitRSV1, deflated[3:])...),
		frame(bitFIN|byte(opPing)|bitRSV1, nil),
		bomb,
	}
}
