package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// LoadConfig is what the load process ("soak load") is asked to do.
type LoadConfig struct {
	URL         string        // the echo endpoint, ws://host:port/chat/connect
	Conns       int           // connections to open and hold
	Rate        int           // connections opened per second during the ramp
	MinInterval time.Duration // each connection sends one message every MinInterval to MaxInterval,
	MaxInterval time.Duration // a fresh random pause each time, the first one at a random phase
}

// LoadStats are the load process's counters, printed as one JSON line per
// sample ("STAT {...}") and once more after the connections are closed.
type LoadStats struct {
	Open       int64            `json:"open"`        // connections open now
	Dialed     int64            `json:"dialed"`      // handshakes that succeeded
	DialErrors int64            `json:"dial_errors"` // handshakes that failed
	Sent       int64            `json:"sent"`        // messages sent
	Echoed     int64            `json:"echoed"`      // echoes received that match what was sent
	Bad        int64            `json:"bad"`         // replies that are not the echo of one of this connection's messages
	SendErrors int64            `json:"send_errors"` // SendText or Flush failed
	Ends       map[string]int64 `json:"ends"`        // how connections ended: close code, or "error"
	RTTp50Ms   float64          `json:"rtt_p50_ms"`  // echo round trip of the messages echoed since the last STAT
	RTTp99Ms   float64          `json:"rtt_p99_ms"`
	RTTMaxMs   float64          `json:"rtt_max_ms"`
}

// loadState is the shared state of the load process's connections.
type loadState struct {
	cfg                                         LoadConfig
	open, dialed, dialErrors, sent, echoed, bad atomic.Int64
	sendErrors                                  atomic.Int64

	mu   sync.Mutex
	ends map[string]int64
	rtts []time.Duration // since the last STAT line
}

// RunLoad opens cfg.Conns connections at cfg.Rate per second, each sending a
// small chat message ({"text": ...}) now and then and reading the echoes,
// until ctx ends; then it closes them all with 1000 and returns the final
// counters. stat is called every statEvery with the counters so far.
//
// Each connection is a websocket.Conn of this module with its own reading
// goroutine, so that the server's keepalive pings are answered as any
// Duplex client answers them: this is the client a Go application would use.
func RunLoad(ctx context.Context, cfg LoadConfig, statEvery time.Duration, stat func(LoadStats)) LoadStats {
	s := &loadState{cfg: cfg, ends: map[string]int64{}}
	var wg sync.WaitGroup
	tick := time.NewTicker(statEvery)
	defer tick.Stop()
	ramp := time.NewTicker(time.Second / time.Duration(max(cfg.Rate, 1)))
	defer ramp.Stop()
	for i := 0; i < cfg.Conns; {
		select {
		case <-ctx.Done():
			i = cfg.Conns
		case <-tick.C:
			stat(s.snapshot())
		case <-ramp.C:
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				s.connection(ctx, id)
			}(i)
			i++
		}
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			stat(s.snapshot())
		}
	}
	wg.Wait()
	return s.snapshot()
}

// connection holds one connection until ctx ends.
func (s *loadState) connection(ctx context.Context, id int) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, _, err := websocket.Dial(dctx, s.cfg.URL, nil)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.dialErrors.Add(1)
		}
		return
	}
	s.dialed.Add(1)
	s.open.Add(1)
	defer s.open.Add(-1)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		s.read(c, id)
	}()

	rng := rand.New(rand.NewPCG(uint64(id), 1))
	pause := func() time.Duration {
		return s.cfg.MinInterval + time.Duration(rng.Int64N(int64(s.cfg.MaxInterval-s.cfg.MinInterval)+1))
	}
	timer := time.NewTimer(time.Duration(rng.Int64N(int64(s.cfg.MaxInterval))))
	defer timer.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			// Close waits for the server's close frame, which the reading
			// goroutine receives.
			_ = c.Close(websocket.StatusNormalClosure, "soak over")
			<-readDone
			return
		case <-readDone:
			return
		case <-timer.C:
		}
		text := fmt.Sprintf("soak %d %d %d", id, seq, time.Now().UnixNano())
		msg, _ := json.Marshal(map[string]string{"text": text})
		err := c.SendText(msg)
		if err == nil {
			err = c.Flush()
		}
		if err != nil {
			s.sendErrors.Add(1)
		} else {
			s.sent.Add(1)
		}
		timer.Reset(pause())
	}
}

// read reads the echoes of one connection until it ends, and records how.
func (s *loadState) read(c *websocket.Conn, id int) {
	prefix := "Echo: soak " + strconv.Itoa(id) + " "
	for {
		msg, err := c.Read(context.Background())
		if err != nil {
			s.ended(err)
			return
		}
		var r struct{ Text string }
		_ = json.Unmarshal(msg.Data, &r)
		rest, ok := strings.CutPrefix(r.Text, prefix)
		f := strings.Fields(rest)
		var sentAt int64
		if ok && len(f) == 2 {
			sentAt, err = strconv.ParseInt(f[1], 10, 64)
		}
		if !ok || len(f) != 2 || err != nil {
			s.bad.Add(1)
			continue
		}
		s.echoed.Add(1)
		s.mu.Lock()
		s.rtts = append(s.rtts, time.Since(time.Unix(0, sentAt)))
		s.mu.Unlock()
	}
}

func (s *loadState) ended(err error) {
	end := "error"
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		end = strconv.Itoa(int(ce.Code))
	}
	s.mu.Lock()
	s.ends[end]++
	s.mu.Unlock()
}

// snapshot returns the counters and the round trips since the last one.
func (s *loadState) snapshot() LoadStats {
	s.mu.Lock()
	rtts := s.rtts
	s.rtts = nil
	ends := maps.Clone(s.ends)
	s.mu.Unlock()
	st := LoadStats{
		Open: s.open.Load(), Dialed: s.dialed.Load(), DialErrors: s.dialErrors.Load(),
		Sent: s.sent.Load(), Echoed: s.echoed.Load(), Bad: s.bad.Load(), SendErrors: s.sendErrors.Load(),
		Ends: ends,
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		st.RTTp50Ms = ms(rtts[len(rtts)/2])
		st.RTTp99Ms = ms(rtts[len(rtts)*99/100])
		st.RTTMaxMs = ms(rtts[len(rtts)-1])
	}
	return st
}
