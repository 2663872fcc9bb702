package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/duplexws/duplex/bench/internal/hubload"
	"github.com/duplexws/duplex/bench/internal/report"
)

// The hub-nats scenario runs the real duplex binary (cmd/duplex), one or
// three processes, in each of report.HubNATSConfigs, round after round with
// the order rotated, and drives it with "bench hubload" (package hubload)
// pinned to the load core. Every node of a configuration is pinned to the
// server CPUs with GOMAXPROCS=1, so that one node and three nodes have the
// same CPU to share: the cost of clustering shows as it would on a machine
// of that size, not hidden by more cores.

// hubNATSPlan is the load of every configuration.
func (o *Options) hubNATSPlan() hubload.Config {
	// 14 steps take solo to about 9700/s: at 10 steps (1943/s) every
	// configuration sustained the top step on an idle machine, so the
	// ladder, not the broker, was the limit.
	// 20 publishes/s to 300 subscribers is 6000 deliveries/s: a fifth of
	// what the hub delivers on one core, so that the lag is the path's and
	// not a queue's, even with the machine shared.
	cfg := hubload.Config{Subs: o.BroadcastSubs, Payload: 64, Rate: 20, Warmup: o.Warmup, Duration: o.Duration,
		FanStart: 10, SoloStart: 50, StepFactor: 1.5, StepDuration: 2 * time.Second, Grace: 2 * time.Second, MaxSteps: 14}
	if o.Short {
		cfg.StepDuration, cfg.Grace, cfg.MaxSteps = time.Second, time.Second, 8
	}
	// The hub allows a connection 50 publishes/s (burst 100): enough
	// publishers for the highest step at 40/s each.
	top := max(cfg.FanStart, cfg.SoloStart)
	for range cfg.MaxSteps - 1 {
		top *= cfg.StepFactor
	}
	cfg.Publishers = int(top/40) + 1
	return cfg
}

// RunHubNATS runs the hub-nats scenario and writes hub-nats.json, .md and
// its plots into opt.Out.
func RunHubNATS(opt Options) (*report.HubNATSResults, error) {
	if opt.BroadcastSubs == 0 {
		opt.BroadcastSubs = 300
		if opt.Short {
			opt.BroadcastSubs = 90
		}
	}
	if opt.Warmup == 0 {
		opt.Warmup = 2 * time.Second
	}
	if opt.Duration == 0 {
		opt.Duration = 5 * time.Second
		if opt.Short {
			opt.Duration = 2 * time.Second
		}
	}
	opt.Defaults()
	fdLimit := raiseFileLimit()
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, fmt.Errorf("taskset (util-linux) is needed to pin the processes: %v", err)
	}
	plan := opt.hubNATSPlan()
	res := &report.HubNATSResults{Started: time.Now(), Machine: machine(fdLimit), Command: opt.Command,
		Rounds: opt.Rounds, ServerCPU: opt.ServerCPU, LoadCPU: opt.LoadCPU, Load: plan,
		Duplex: treeVersion(opt.ModDir, "..")}
	m := res.Machine
	fmt.Fprintf(opt.Log, "machine: %d cores, %s, %s, load average %s\n", m.Cores, m.CPUModel, m.GoVersion, m.LoadStart)
	bin := filepath.Join(opt.ModDir, "bin", "duplex")
	build := exec.Command("go", "build", "-o", bin, "./cmd/duplex")
	build.Dir = filepath.Join(opt.ModDir, "..")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building cmd/duplex: %v\n%s", err, out)
	}
	for round := 1; round <= opt.Rounds; round++ {
		for _, c := range rotate(report.HubNATSConfigs, round-1) {
			fmt.Fprintf(opt.Log, "r%d %s: %d subscribers over %d node(s)...\n", round, c.Name, plan.Subs, c.Nodes)
			run := hubNATSRun(opt, bin, c, plan, nil)
			run.Round = round
			if run.Err != "" {
				fmt.Fprintf(opt.Log, "  failed: %s\n", run.Err)
			} else {
				l := run.Load
				fmt.Fprintf(opt.Log, "  lag p50 %.2f ms p99 %.2f ms, ack p50 %.2f ms; max fan %.0f/s, solo %.0f/s\n",
					l.Lag.P50/1e3, l.Lag.P99/1e3, l.Ack.P50/1e3, l.MaxFanRate, l.MaxSoloRate)
			}
			res.Runs = append(res.Runs, run)
		}
	}
	res.Machine.LoadEnd = loadavg()
	res.Finished = time.Now()
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return res, err
	}
	if opt.Profile == report.HubNATS {
		res.Profiles = profileHubNATS(opt, bin, plan)
	}
	return res, report.WriteHubNATS(res, opt.Out)
}

// profileHubNATS runs the memory broker and the 3-node R3 cluster once more
// with perf sampling every node during the latency window, and keeps the
// top symbols in <out>/profile/hub-nats-<config>.perf.txt.
func profileHubNATS(opt Options, bin string, plan hubload.Config) []string {
	if _, err := exec.LookPath("perf"); err != nil {
		fmt.Fprintln(opt.Log, "profile: no perf:", err)
		return nil
	}
	dir := filepath.Join(opt.Out, "profile")
	_ = os.MkdirAll(dir, 0o755)
	var out []string
	for _, c := range report.HubNATSConfigs {
		if c.Name != "memory" && c.Name != "nats-3-r3" {
			continue
		}
		data := filepath.Join(os.TempDir(), "hub-nats-"+c.Name+".perf.data")
		fmt.Fprintf(opt.Log, "profiling %s...\n", c.Name)
		var rec *exec.Cmd
		run := hubNATSRun(opt, bin, c, plan, func(kind string, pids []int) {
			switch kind {
			case "measure-start":
				var ps []string
				for _, p := range pids {
					ps = append(ps, strconv.Itoa(p))
				}
				rec = exec.Command("perf", "record", "-q", "-F", "499", "-g", "-o", data, "-p", strings.Join(ps, ","))
				if err := rec.Start(); err != nil {
					fmt.Fprintln(opt.Log, "profile:", err)
					rec = nil
				}
			case "measure-end":
				if rec != nil {
					_ = rec.Process.Signal(os.Interrupt)
					_ = rec.Wait()
				}
			}
		})
		if run.Err != "" || rec == nil {
			fmt.Fprintln(opt.Log, "profile:", run.Err)
			continue
		}
		var text []byte
		for _, sort := range []string{"dso,symbol", "pid"} {
			b, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
				"--percent-limit", "0.7", "--sort", sort).CombinedOutput()
			if err != nil {
				fmt.Fprintf(opt.Log, "profile: perf report: %v: %s\n", err, b)
				break
			}
			text = append(text, b...)
		}
		file := filepath.Join(dir, "hub-nats-"+c.Name+".perf.txt")
		if err := os.WriteFile(file, text, 0o644); err == nil {
			out = append(out, filepath.Join("profile", filepath.Base(file)))
			fmt.Fprintf(opt.Log, "  %s\n", file)
		}
		os.Remove(data)
	}
	return out
}

// hubNATSRun starts c's nodes, runs the load against them and stops them.
// onEvent, if not nil, is told each load event with the nodes' pids.
func hubNATSRun(opt Options, bin string, c report.HubNATSConfig, plan hubload.Config, onEvent func(kind string, pids []int)) report.HubNATSRun {
	run := report.HubNATSRun{Config: c.Name}
	dataDir, err := os.MkdirTemp("", "hub-nats-")
	if err != nil {
		run.Err = err.Error()
		return run
	}
	defer os.RemoveAll(dataDir)
	t0 := time.Now()
	nodes, err := startNodes(bin, opt.ServerCPU, dataDir, c)
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	if err != nil {
		run.Err = err.Error()
		return run
	}
	run.StartSeconds = time.Since(t0).Seconds()
	var pids []int
	for _, n := range nodes {
		plan.Nodes = append(plan.Nodes, n.addr)
		pids = append(pids, n.pid)
	}
	nodesCPU := func() float64 {
		s := 0.0
		for _, p := range pids {
			v, _ := cpuSeconds(p)
			s += v
		}
		return s
	}
	cfg, _ := json.Marshal(plan)
	cmd := exec.Command("taskset", "-c", opt.LoadCPU, opt.Self, "hubload", string(cfg))
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	stderr := &tail{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		run.Err = err.Error()
		return run
	}
	if err := cmd.Start(); err != nil {
		run.Err = err.Error()
		return run
	}
	timer := time.AfterFunc(10*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	var c0, w0 float64
	var t1 time.Time
	var stepCPU []float64
	var result []byte
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if js, ok := strings.CutPrefix(line, "RESULT "); ok {
			result = []byte(js)
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, "EVENT "))
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "measure-start", "step-start":
			c0, t1 = nodesCPU(), time.Now()
			w0, _ = cpuSeconds(cmd.Process.Pid)
		case "measure-end":
			run.NodesCPU = nodesCPU() - c0
			w1, _ := cpuSeconds(cmd.Process.Pid)
			run.LoadCPU, run.Wall = w1-w0, time.Since(t1).Seconds()
		case "step-end":
			stepCPU = append(stepCPU, nodesCPU()-c0)
		}
		if onEvent != nil {
			onEvent(f[0], pids)
		}
	}
	err = cmd.Wait()
	if result == nil {
		run.Err = fmt.Sprintf("load: %v: %s", err, stderr)
		return run
	}
	if err := json.Unmarshal(result, &run.Load); err != nil {
		run.Err = err.Error()
		return run
	}
	for i := range run.Load.Steps {
		if i < len(stepCPU) {
			run.Load.Steps[i].NodesCPU = stepCPU[i]
		}
	}
	for i, n := range nodes {
		if n.exited() {
			run.Err = fmt.Sprintf("node %d exited during the run: %s", i, n.stderr)
		}
	}
	return run
}

// duplexNode is one running duplex process.
type duplexNode struct {
	cmd    *exec.Cmd
	addr   string
	pid    int
	stderr *tail
	done   chan struct{} // closed when the process has exited
	listen chan string   // the address of its "listening" line
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startNodes starts c's nodes together (a cluster's nodes wait for each
// other's JetStream) and waits until each listens.
func startNodes(bin, cpu, dataDir string, c report.HubNATSConfig) ([]*duplexNode, error) {
	var routes []string
	if c.Nodes > 1 {
		for range c.Nodes {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			routes = append(routes, ln.Addr().String())
			ln.Close()
		}
	}
	var nodes []*duplexNode
	for i := range c.Nodes {
		args := []string{"-addr", "127.0.0.1:0", "-broker", c.Broker, "-data-dir", filepath.Join(dataDir, fmt.Sprint("n", i))}
		if c.Nodes > 1 {
			args = append(args, "-nats-cluster", routes[i], "-nats-routes", strings.Join(routes, ","),
				"-nats-name", fmt.Sprint("n", i), "-nats-replicas", strconv.Itoa(c.Replicas))
		}
		n, err := launchNode(bin, cpu, args)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		if err := n.awaitListening(90 * time.Second); err != nil {
			return nodes, fmt.Errorf("node %d: %w", i, err)
		}
	}
	return nodes, nil
}

func launchNode(bin, cpu string, args []string) (*duplexNode, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpu, bin}, args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	n := &duplexNode{cmd: cmd, stderr: &tail{}, done: make(chan struct{}), listen: make(chan string, 1)}
	out, err := cmd.StdoutPipe() // slog's text lines
	if err != nil {
		return nil, err
	}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n.pid = cmd.Process.Pid // taskset execs duplex in place
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				select {
				case n.listen <- m[1]:
				default:
				}
			}
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				io.WriteString(n.stderr, line+"\n")
			}
		}
		_ = cmd.Wait()
		close(n.done)
	}()
	return n, nil
}

// awaitListening waits for the node's "listening" log line and keeps its
// address.
func (n *duplexNode) awaitListening(timeout time.Duration) error {
	select {
	case n.addr = <-n.listen:
		return nil
	case <-n.done:
		return fmt.Errorf("exited before listening: %s", n.stderr)
	case <-time.After(timeout):
		return errors.New("did not listen in time")
	}
}

func (n *duplexNode) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (duplex drains and stops), then kills after a while.
func (n *duplexNode) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}
