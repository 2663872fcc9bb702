package websocket

import (
	"context"
	"testing"
)

// TestDeflateBufferReusingPathsAllocateNothing checks that a compressed
// message costs no allocation once the pools are warm, on the paths meant to
// reuse buffers: ReadInto given the last message's Data, SendBinary and
// Flush, and a prepared message sent to a connection without context
// takeover.
func TestDeflateBufferReusingPathsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	ctx := context.Background()
	for _, size := range []int{1024, 16 << 10} {
		payloads := deflateBenchPayloads(size)
		for _, mode := range deflateBenchModes {
			client, ctr := deflateBenchConn(mode.co, true)
			for _, p := range payloads {
				if err := client.Write(ctx, MessageBinary, p); err != nil {
					t.Fatal(err)
				}
			}
			in := ctr.out.Bytes()
			server, tr := deflateBenchConn(mode.co, false)
			var buf []byte
			i := 0
			readOne := func() {
				if i%deflateBenchVariants == 0 {
					tr.in = in
				}
				i++
				msg, err := server.ReadInto(ctx, buf)
				if err != nil {
					t.Fatal(err)
				}
				buf = msg.Data
			}
			for range deflateBenchVariants { // buf grows to the largest message
				readOne()
			}
			if n := testing.AllocsPerRun(100, readOne); n != 0 {
				t.Errorf("%d B, %s: ReadInto allocates %.1f times per message", size, mode.name, n)
			}

			j := 0
			sendOne := func() {
				tr.out.Reset()
				if err := server.SendBinary(payloads[j%deflateBenchVariants]); err != nil {
					t.Fatal(err)
				}
				j++
				if err := server.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if n := testing.AllocsPerRun(100, sendOne); n != 0 {
				t.Errorf("%d B, %s: SendBinary+Flush allocates %.1f times per message", size, mode.name, n)
			}

			if mode.co.NoContextTakeover {
				pm := NewPreparedMessage(MessageBinary, payloads[0])
				sendPrepared := func() {
					tr.out.Reset()
					if err := server.SendPrepared(pm); err != nil {
						t.Fatal(err)
					}
					if err := server.Flush(); err != nil {
						t.Fatal(err)
					}
				}
				if n := testing.AllocsPerRun(100, sendPrepared); n != 0 {
					t.Errorf("%d B: SendPrepared+Flush allocates %.1f times per message", size, n)
				}
			}
		}
	}
}
