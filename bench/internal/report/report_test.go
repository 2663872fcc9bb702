package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func synthetic() *Results {
	res := &Results{
		Machine:  Machine{CPUModel: "Test CPU", Cores: 2, GoVersion: "go1.26.8", FDLimit: 20000},
		Settings: Settings{Command: "go run ./cmd/bench", Rounds: 2, Warmup: time.Second, Duration: 3 * time.Second, Depth: 1, Windows: []int{4}},
		Started:  time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Finished: time.Date(2026, 11, 25, 12, 30, 0, 0, time.UTC),
	}
	speed := map[string]float64{"duplex": 90, "gorilla": 80, "gws": 100, "tcp": 110}
	for _, l := range []string{"duplex", "gorilla", "gws", "tcp"} {
		res.Libs = append(res.Libs, Lib{Name: l, Built: true, Compression: l == "gorilla" || l == "gws"})
		for round := 1; round <= 2; round++ {
			v := speed[l] * (1 + 0.01*float64(round))
			for _, p := range []int{64, 16 << 10} {
				res.Records = append(res.Records, Record{Scenario: Echo, Lib: l, Round: round, Conns: 100, Payload: p,
					MsgsPerSec: v * 1000, P50: 100, P99: 1000, P999: 2000, CPUPerMsg: 1000 / v, ServerBusy: 0.9, LoadBusy: 0.7})
			}
			res.Records = append(res.Records, Record{Scenario: Pipelined, Lib: l, Round: round, Conns: 100, Payload: 64, Depth: 16,
				MsgsPerSec: v * 1500, P50: 300, P99: 2000, P999: 3000, CPUPerMsg: 600 / v, ServerBusy: 0.9, LoadBusy: 0.7})
			for _, n := range []int{1000, 5000} {
				res.Records = append(res.Records, Record{Scenario: Idle, Lib: l, Round: round, Conns: n, BytesPerConn: 40000 / v})
				if l == "duplex" {
					res.Records = append(res.Records, Record{Scenario: IdleVariant, Lib: l, Variant: "accept", Round: round, Conns: n, BytesPerConn: 30000 / v})
				}
			}
			res.Records = append(res.Records, Record{Scenario: Broadcast, Lib: l, Round: round, Conns: 1000, Payload: 64, Window: 4,
				DeliveriesPerSec: v * 3000, P50: 1000, P99: 5000, P999: 9000, CPUPerMsg: 2})
			if l != "tcp" {
				r := Record{Scenario: Deflate, Lib: l, Round: round, Conns: 100, Payload: 1024, MsgsPerSec: v * 300}
				if l == "duplex" {
					r = Record{Scenario: Deflate, Lib: l, Round: round, Conns: 100, Payload: 1024, NA: true}
				}
				res.Records = append(res.Records, r)
			}
		}
	}
	res.Records = append(res.Records, Record{Scenario: Echo, Lib: "gorilla", Round: 3, Conns: 100, Payload: 64, Err: "server exited"})
	res.Libs = append(res.Libs, Lib{Name: Hub, Module: "github.com/duplexws/duplex/hub", Built: true})
	for round := 1; round <= 2; round++ {
		for _, win := range []int{1, 4} {
			for lib, v := range map[string]float64{Hub: 50, "duplex": 100, "gws": 80} {
				r := Record{Scenario: HubBroadcast, Lib: lib, Round: round, Conns: 1000, Payload: 64, Window: win,
					DeliveriesPerSec: v * 1000 * float64(win), P50: 100000 / v, P99: 200000 / v, P999: 300000 / v, CPUPerMsg: 1000 / v, ReplyBytes: 64}
				if lib == "duplex" {
					r.Variant = "prepared"
				}
				res.Records = append(res.Records, r)
			}
		}
	}
	return res
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	res := synthetic()
	res.Settings.IdleRounds = 1
	res.Settings.ShuffledOrder = true
	if err := Write(res, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"2 cores, Test CPU",
		"2 round(s) (idle and deflate-idle: the first 1), the libraries' order shuffled for each cell",
		"| echo c=100 64 B | msgs/s | 91.3k | gws 101.5k | 0.90× (medians' 0.90×) | 0.82× |",
		"| 64 B | 91.3k (90.9k–91.8k) | 81.2k (80.8k–81.6k) | 101.5k (101.0k–102.0k) | 111.7k (111.1k–112.2k) |",
		"| 1 KiB | n/a |",
		"server exited",
		"![idle memory](idle.png)",
		"## Broadcast through the hub (hub-broadcast)",
		"### 1000 subscribers, 64 B messages, W = 4",
		"| hub | 200.0k (200.0k–200.0k) | 0.50× | 2.00 ms | 4.00 ms | 6.00 ms | 20.00 (20.00–20.00) | 2.00× | 64 | 0.00 | 0% | 0.00 s | 0 |",
		"The hub against the raw loop: 0.50× the deliveries/s, 2.00× the lag at p50 and 2.00× at p99, 2.00× the server CPU per delivery.",
		"![hub-broadcast](hub-broadcast.png)",
		"## 1b. Pipelined echo: 16 messages in flight per connection",
		"| 64 B | 0.90× · 1.23× | 0.80× · 1.09× | 1.00× · 1.36× | 1.10× · 1.50× |",
		"**Duplex pipelined (16 in flight) against the TCP floor with one in flight:** 64 B: 1.23× the msgs/s, 0.73× the server CPU per message.",
		"| pipelined c=100 64 B, 16 in flight | msgs/s (floor: 1 in flight) | 137.0k | gws 152.2k | 0.90× (medians' 0.90×) | 1.23× |",
		"### Duplex's modes",
		"| 5000 | 1.11× · 1.22× | 0.83× · 0.92× · 1.33× |",
		"| idle c=5000, duplex (accept) | bytes/conn | 0.32 KiB | gws 0.38 KiB | 0.83× | 0.92× |",
		"| payload | duplex | gorilla, no takeover | gws, no takeover |",
		"### Mode for mode",
		"## Issue 12's targets",
		"| Echo: p99 at or below gws's, every size and connection count | met | c=100 64 B 1.00× (paired; 1.00–1.00 over 2 rounds; medians' ratio 1.00×), c=100 16 KiB 1.00× (paired; 1.00–1.00 over 2 rounds; medians' ratio 1.00×) (duplex ÷ gws) |",
		"judged on the median of those ratios",
		"![pipelined-c100](pipelined-c100.png)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("REPORT.md lacks %q", want)
		}
	}
	for _, f := range []string{"echo-c100.png", "cpu-c100.png", "idle.png", "broadcast-w4.png", "deflate.png", "pipelined-c100.png", "results.json", "hub-broadcast.png", "hub-broadcast-lag.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if t.Failed() {
		t.Log(string(md))
	}
}

// The summary compares Duplex with the best peer paired within rounds, and
// counts it behind or ahead by that: here one slow round and noise make
// the medians' ratio 1.18× (behind) while the paired one is 0.95×.
func TestSummaryPaired(t *testing.T) {
	recs := echoCPU(echoCPU(inRounds(onTarget(), 3), Ours, 12, 9.69, 19), "gws", 10, 10.2, 20)
	var b strings.Builder
	newAgg(fixture(recs...)).summary(&b)
	out := b.String()
	if want := "| echo c=100 64 B | CPU µs/msg | 12.00 | gws 10.20 | 0.95× (medians' 1.18×) |"; !strings.Contains(out, want) {
		t.Errorf("the summary lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, "CPU µs/msg: 1.") {
		t.Errorf("the summary counts Duplex behind on the medians' ratio:\n%s", out)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int]string{64: "64 B", 1024: "1 KiB", 16 << 10: "16 KiB", 1000: "1000 B", 1 << 20: "1 MiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// wantContains fails the test for each of wants that out, named what in the
// message, does not contain.
func wantContains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, out)
		}
	}
}
