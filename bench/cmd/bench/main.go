// Command bench runs Duplex side by side with gorilla/websocket,
// coder/websocket, lxzan/gws, gobwas/ws, lesismal/nbio and a plain TCP echo,
// and writes results/REPORT.md, results/results.json and PNG plots.
//
//	cd bench && go run ./cmd/bench -short   # the quick run, under 3 minutes
//	cd bench && go run ./cmd/bench          # the full run, about 29 minutes
//
// The scenarios: echo throughput, latency and server CPU per message, with
// one message in flight and pipelined; memory per idle connection (Duplex in
// each of its modes); broadcast fan-out to one room; echo with
// permessage-deflate, mode for mode, and memory with it. Each server runs pinned to one core and the load
// generator (this binary, "bench loadgen") to another.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/duplexws/duplex/bench/internal/harness"
	"github.com/duplexws/duplex/bench/internal/report"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		runLoadgen(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "hubload" {
		runHubLoad(os.Args[2:])
		return
	}
	var o harness.Options
	var libs, scenarios, conns, payloads, idle string
	flag.BoolVar(&o.Short, "short", false, "the quick run (1 round, fewer cells, short windows)")
	flag.IntVar(&o.Rounds, "rounds", 0, "rounds (default 3, or 1 with -short)")
	flag.IntVar(&o.IdleRounds, "idle-rounds", 0, "rounds of the idle and deflate-idle scenarios, the first ones (default and at most -rounds: memory drifts little and is slow to ramp)")
	flag.StringVar(&libs, "libs", "", "comma-separated libraries (default: duplex,gorilla,coder,gws,gobwas,nbio,tcp)")
	flag.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios (default: echo,pipelined,idle,broadcast,deflate,deflate-idle; also hub-broadcast; hub-nats runs alone)")
	flag.StringVar(&conns, "conns", "", "echo connection counts, comma-separated")
	flag.StringVar(&payloads, "payloads", "", "echo payload sizes in bytes, comma-separated")
	flag.StringVar(&idle, "idle", "", "idle connection counts, comma-separated")
	flag.IntVar(&o.BroadcastSubs, "subscribers", 0, "broadcast subscribers")
	flag.DurationVar(&o.Warmup, "warmup", 0, "warm-up of each run")
	flag.DurationVar(&o.Duration, "duration", 0, "measured window of each run")
	flag.IntVar(&o.Depth, "depth", 0, "echo messages in flight per connection (default 1)")
	var windows, variants, echoVariants string
	flag.StringVar(&variants, "duplex-variants", "", "servers/duplex -variant values run in idle beside Open, one curve each, comma-separated, or none (default: accept and events, those servers/duplex lists in -features; none with -short)")
	flag.StringVar(&echoVariants, "duplex-echo-variants", "", "servers/duplex -variant values run in echo and pipelined beside Open, comma-separated, or none (default: events, if servers/duplex lists it in -features; also accept when asked)")
	flag.IntVar(&o.PipelinedDepth, "pipelined-depth", 0, "pipelined echo: messages in flight per connection (default 16)")
	flag.StringVar(&windows, "windows", "", "broadcast messages in flight, comma-separated (default 1,4, or 4 with -short)")
	flag.StringVar(&o.Out, "out", "", "results directory (default results, or results/short with -short)")
	flag.StringVar(&o.ServerCPU, "server-cpu", "0", "CPUs of the servers (taskset list)")
	flag.StringVar(&o.LoadCPU, "load-cpu", "1", "CPUs of the load generator (taskset list)")
	flag.StringVar(&o.Profile, "profile", "", "afterwards, profile this library's server under echo load (results/profile); hub: the hub and the raw loop under hub-broadcast load; hub-nats: perf on the nodes")
	hijackFloor := flag.Bool("hijack-floor", true, "with tcp, run the net/http hijack floor (servers/tcp -variant hijack) in the idle scenario beside Duplex's modes")
	micro := flag.String("micro", "auto", "run the microbenchmarks: yes, no, or auto (yes unless -short)")
	rereport := flag.String("report", "", "only write the report again from this results.json (into its directory, or -out)")
	flag.Parse()
	if *rereport != "" {
		writeReport(*rereport, o.Out)
		return
	}
	o.NoHijackFloor = !*hijackFloor
	o.Micro = *micro == "yes" || *micro == "auto" && !o.Short

	o.Command = "go run ./cmd/bench " + strings.Join(os.Args[1:], " ")
	o.Libs = split(libs)
	o.Scenarios = split(scenarios)
	o.EchoConns = ints(conns)
	o.Payloads = ints(payloads)
	o.IdleSteps = ints(idle)
	o.Windows = ints(windows)
	o.DuplexVariants = variantList(variants)
	o.DuplexEchoVariants = variantList(echoVariants)
	if o.Out == "" {
		o.Out = "results"
		if o.Short {
			o.Out = filepath.Join("results", "short")
		}
	}
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	o.Self = self
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		fatal(fmt.Errorf("run bench from its module (cd bench): %v", err))
	}
	o.ModDir = strings.TrimSpace(string(out))
	if !filepath.IsAbs(o.Out) {
		o.Out = filepath.Join(o.ModDir, o.Out)
	}

	if slices.Contains(o.Scenarios, report.HubNATS) { // a run of its own: hub-nats.{json,md,png}
		runHubNATS(o)
		return
	}
	start := time.Now()
	res, err := harness.Run(o)
	if err != nil {
		fatal(err)
	}
	failed := 0
	for _, r := range res.Records {
		if r.Err != "" {
			failed++
		}
	}
	fmt.Fprintf(os.Stderr, "%d measurements in %s, %d failed; report: %s\n", len(res.Records),
		time.Since(start).Round(time.Second), failed, filepath.Join(o.Out, "REPORT.md"))
}

// writeReport renders REPORT.md and the plots again from a results.json.
func writeReport(file, out string) {
	b, err := os.ReadFile(file)
	if err != nil {
		fatal(err)
	}
	var res report.Results
	if err := json.Unmarshal(b, &res); err != nil {
		fatal(err)
	}
	if out == "" {
		out = filepath.Dir(file)
	}
	if err := report.Write(&res, out); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "report: %s\n", filepath.Join(out, "REPORT.md"))
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// variantList is a -duplex-*variants flag: nil (the default) when unset,
// empty for "none", else the list.
func variantList(s string) []string {
	switch s {
	case "":
		return nil
	case "none":
		return []string{}
	}
	return split(s)
}

func ints(s string) []int {
	var out []int
	for _, f := range split(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			fatal(fmt.Errorf("%q is not a number", f))
		}
		out = append(out, n)
	}
	return out
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
