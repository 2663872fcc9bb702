package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duplexws/duplex/bench/internal/hubload"
)

// Two rounds of the four configurations, NATS R3 twice the memory broker's
// lag and half its rates: the tables show medians with their spread and
// the ratios to the memory broker, and the files are all written.
func TestWriteHubNATS(t *testing.T) {
	res := &HubNATSResults{Machine: Machine{Cores: 2, CPUModel: "Test CPU"}, Command: "go run ./cmd/bench -scenarios hub-nats",
		Rounds: 2, ServerCPU: "0", LoadCPU: "1", Load: hubload.Config{Subs: 300, Publishers: 10, Rate: 50}}
	for round := 1; round <= 2; round++ {
		for i, c := range HubNATSConfigs {
			k := float64(1 + i/3) // R3: 2×
			spread := float64(round) * 0.1
			lat := hubload.Lat{N: 100, P50: 1000*k + spread, P90: 2000 * k, P99: 3000*k + spread, Max: 4000 * k}
			run := HubNATSRun{Config: c.Name, Round: round, NodesCPU: 0.3 * k, Load: hubload.Result{
				Lag: lat, Ack: lat, LagByNode: make([]hubload.Lat, c.Nodes), Published: 250, Want: 75000, Delivered: 75000,
				MaxFanRate: 100 / k, MaxSoloRate: 1000 / k,
				Steps: []hubload.Step{{Room: hubload.SoloRoom, Rate: 1000 / k, Published: 2000, Sustained: true, NodesCPU: 0.2},
					{Room: hubload.SoloRoom, Rate: 1500 / k, Sustained: false, Why: "lag p99 600 ms: a backlog"}}}}
			for n := range run.Load.LagByNode {
				run.Load.LagByNode[n] = lat
			}
			res.Runs = append(res.Runs, run)
		}
	}
	res.Runs = append(res.Runs, HubNATSRun{Config: "nats-1", Round: 3, Err: "node 0: did not listen in time"})
	dir := t.TempDir()
	if err := WriteHubNATS(res, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "hub-nats.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"**Machine:** 2 cores (Test CPU)",
		"| memory broker, 1 node | 1.00 ms (1.00 ms–1.00 ms) | 1.00× |",
		"| NATS, 3 nodes, R3 | 2.00 ms (2.00 ms–2.00 ms) | 2.00× |",
		"| (one node) |",
		"| NATS, 3 nodes, R3 | 50 (50–50) | 0.50× | 15.0k (15.0k–15.0k) | 0.50× | 500 (500–500) | 0.50× | 100 (100–100) | 1.00× |",
		"**solo** 500 ✓ (0.00 ms) 750 ✗ (lag p99 600 ms: a backlog)",
		"r3 nats-1: **failed**: node 0: did not listen in time",
		"75000/75000, 75000/75000",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("hub-nats.md lacks %q", want)
		}
	}
	for _, f := range []string{"hub-nats.json", "hub-nats.png", "hub-nats-throughput.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if t.Failed() {
		t.Log(string(md))
	}
}
