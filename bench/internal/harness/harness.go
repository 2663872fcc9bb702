// Package harness runs the side-by-side benchmark: it builds every server,
// pins each server and the load generator to their own cores, runs the
// scenarios with the libraries interleaved round-robin over several rounds,
// and hands the records to the report.
package harness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/report"
)

// Libraries, in the order of the report; tcp is the floor.
var Libraries = []report.Lib{
	{Name: "duplex", Module: "github.com/duplexws/duplex"},
	{Name: "gorilla", Module: "github.com/gorilla/websocket"},
	{Name: "coder", Module: "github.com/coder/websocket"},
	{Name: "gws", Module: "github.com/lxzan/gws"},
	{Name: "gobwas", Module: "github.com/gobwas/ws"},
	{Name: "nbio", Module: "github.com/lesismal/nbio"},
	{Name: "tcp", Module: "(plain TCP echo, the floor)"},
}

// HubServer is package hub as a server (servers/hub), built only for the
// hub-broadcast scenario; it is not one of the Libraries.
var HubServer = report.Lib{Name: report.Hub, Module: "github.com/duplexws/duplex/hub"}

// hubTarget is one server of the hub-broadcast scenario: the hub, and beside
// it the raw prepared-message loop (duplex -variant prepared) and gws's
// Broadcaster (gws's broadcast mode), each if its library is built.
type hubTarget struct{ lib, variant string }

func (t hubTarget) String() string {
	if t.variant != "" {
		return t.lib + " (" + t.variant + ")"
	}
	return t.lib
}

// hubRoom is the room the hub-broadcast scenario publishes to.
const hubRoom = "bench"

// Options of a run.
type Options struct {
	Command   string   // how the run was started, for the report
	Short     bool     // the quick run
	Rounds    int      // rounds of the whole plan
	Libs      []string // libraries to run (default: all)
	Scenarios []string // scenarios to run (default: all)
	Out       string   // results directory
	ModDir    string   // the bench module's directory
	Self      string   // this executable, run as "bench loadgen"
	ServerCPU string   // taskset list for the servers
	LoadCPU   string   // taskset list for the load generator
	Profile   string   // library whose server to profile under echo load afterwards
	Micro     bool     // run the microbenchmarks too
	Log       io.Writer

	Warmup, Duration time.Duration
	EchoConns        []int
	Payloads         []int
	Depth            int
	IdleSteps        []int
	BroadcastSubs    int
	BroadcastPayload int
	Windows          []int // broadcast: messages in flight, one cell per value
	DeflateConns     int
	DeflatePayloads  []int
}

// Defaults fills in the plan of the full run or, with Short, of the quick one.
func (o *Options) Defaults() {
	maxN := maxConns()
	if o.Short {
		def(&o.Rounds, 1)
		defDur(&o.Warmup, 500*time.Millisecond)
		defDur(&o.Duration, time.Second)
		defInts(&o.EchoConns, 100)
		defInts(&o.Payloads, 64, 16<<10)
		defInts(&o.IdleSteps, 1000, 5000)
		def(&o.BroadcastSubs, 1000)
		defInts(&o.DeflatePayloads, 1<<10)
	} else {
		def(&o.Rounds, 3)
		defDur(&o.Warmup, time.Second)
		defDur(&o.Duration, 3*time.Second)
		defInts(&o.EchoConns, 100, 1000)
		defInts(&o.Payloads, 64, 1<<10, 16<<10, 64<<10)
		defInts(&o.IdleSteps, 1000, 5000, 10000, maxN)
		def(&o.BroadcastSubs, min(10000, maxN-1))
		defInts(&o.DeflatePayloads, 1<<10, 16<<10)
	}
	def(&o.Depth, 1)
	if o.Short {
		defInts(&o.Windows, 4)
	} else {
		defInts(&o.Windows, 1, 4)
	}
	def(&o.BroadcastPayload, 64)
	def(&o.DeflateConns, 100)
	if o.ServerCPU == "" {
		o.ServerCPU = "0"
	}
	if o.LoadCPU == "" {
		o.LoadCPU = "1"
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{report.Echo, report.Idle, report.Broadcast, report.Deflate}
	}
	if len(o.Libs) == 0 {
		for _, l := range Libraries {
			o.Libs = append(o.Libs, l.Name)
		}
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
}

func def(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func defDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

func defInts(p *[]int, v ...int) {
	if len(*p) == 0 {
		*p = v
	}
}

// maxConns is the largest connection count one process can hold under the
// hard open-file limit, with room for the process's other descriptors.
func maxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<20 {
		return 100000
	}
	n := int(lim.Max) - 1000
	return n - n%1000
}

// raiseFileLimit raises this process's soft open-file limit to the hard one;
// the servers and the load generator raise their own the same way.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Max
}

type runner struct {
	opt  Options
	libs map[string]*report.Lib
	bin  map[string]string
	res  *report.Results
	prog *progress
}

type task struct {
	label string
	est   float64 // expected seconds, for the progress bar
	run   func() []report.Record
}

// Run builds, runs and reports. It returns the results it wrote.
func Run(opt Options) (*report.Results, error) {
	opt.Defaults()
	fdLimit := raiseFileLimit()
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, fmt.Errorf("taskset (util-linux) is needed to pin the processes: %v", err)
	}
	r := &runner{opt: opt, libs: map[string]*report.Lib{}, bin: map[string]string{}}
	r.res = &report.Results{Started: time.Now()}
	r.res.Machine = machine(fdLimit)
	r.res.Settings = report.Settings{Command: opt.Command, Short: opt.Short, Rounds: opt.Rounds,
		Warmup: opt.Warmup, Duration: opt.Duration, ServerCPU: opt.ServerCPU, LoadCPU: opt.LoadCPU,
		Depth: opt.Depth, Windows: opt.Windows}
	m := r.res.Machine
	fmt.Fprintf(opt.Log, "machine: %d cores, %s, %s, Linux %s, open-file limit %d, load average %s\n",
		m.Cores, m.CPUModel, m.GoVersion, m.Kernel, m.FDLimit, m.LoadStart)
	if runtime.NumCPU() < 2 {
		fmt.Fprintln(opt.Log, "warning: fewer than 2 cores; server and load share one")
	}

	if err := r.build(); err != nil {
		return nil, err
	}
	if r.has(report.HubBroadcast) {
		if err := r.buildHub(); err != nil {
			return nil, err
		}
	}
	tasks := r.plan()
	if opt.Micro {
		tasks = append(tasks, task{label: "microbenchmarks", est: 60, run: func() []report.Record {
			var err error
			r.res.Micro, err = r.micro()
			if err != nil {
				r.res.MicroErr = err.Error()
			}
			return nil
		}})
	}
	r.prog = newProgress(opt.Log, tasks)
	for i, t := range tasks {
		r.prog.begin(i, t.label)
		r.res.Records = append(r.res.Records, t.run()...)
		r.prog.end(i)
	}
	r.prog.finish()
	r.res.Machine.LoadEnd = loadavg()
	r.res.Finished = time.Now()

	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, err
	}
	if err := report.Write(r.res, opt.Out); err != nil {
		return r.res, err
	}
	if opt.Profile != "" {
		if err := r.profile(opt.Profile); err != nil {
			fmt.Fprintln(opt.Log, "profile:", err)
		}
	}
	return r.res, nil
}

// build compiles every server into bin/ and asks each what it supports.
func (r *runner) build() error {
	versions := moduleVersions(filepath.Join(r.opt.ModDir, "go.mod"))
	binDir := filepath.Join(r.opt.ModDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(r.opt.Log, "building %d servers...\n", len(r.opt.Libs))
	var order []string
	for _, name := range r.opt.Libs {
		known := false
		for _, l := range Libraries {
			known = known || l.Name == name
		}
		if !known {
			return fmt.Errorf("unknown library %q", name)
		}
	}
	for _, l := range Libraries { // the report's order, whatever the flag's
		for _, name := range r.opt.Libs {
			if l.Name == name {
				order = append(order, name)
			}
		}
	}
	r.opt.Libs = order
	for _, name := range order {
		var lib *report.Lib
		for _, l := range Libraries {
			if l.Name == name {
				l := l
				lib = &l
			}
		}
		lib.Version = versions[lib.Module]
		if lib.Name == "duplex" {
			lib.Version = duplexVersion(r.opt.ModDir)
		}
		bin := filepath.Join(binDir, "srv-"+name)
		cmd := exec.Command("go", "build", "-o", bin, "./servers/"+name)
		cmd.Dir = r.opt.ModDir
		if out, err := cmd.CombinedOutput(); err != nil {
			lib.BuildErr = strings.TrimSpace(string(out))
			fmt.Fprintf(r.opt.Log, "  %s: build failed, it will be reported as such:\n%s\n", name, out)
		} else {
			lib.Built = true
			out, _ := exec.Command(bin, "-features").Output()
			lib.Compression = strings.Contains(string(out), "compression=true")
		}
		r.libs[name] = lib
		r.bin[name] = bin
		r.res.Libs = append(r.res.Libs, *lib)
	}
	return nil
}

var requireLine = regexp.MustCompile(`(?m)^\s*(?:require\s+)?(\S+)\s+(v\S+)`)

func moduleVersions(gomod string) map[string]string {
	b, _ := os.ReadFile(gomod)
	m := map[string]string{}
	for _, s := range requireLine.FindAllStringSubmatch(string(b), -1) {
		m[s[1]] = s[2]
	}
	return m
}

// buildHub compiles servers/hub, for the hub-broadcast scenario.
func (r *runner) buildHub() error {
	lib := HubServer
	lib.Version = treeVersion(r.opt.ModDir, "../hub")
	bin := filepath.Join(r.opt.ModDir, "bin", "srv-"+lib.Name)
	cmd := exec.Command("go", "build", "-o", bin, "./servers/"+lib.Name)
	cmd.Dir = r.opt.ModDir
	if out, err := cmd.CombinedOutput(); err != nil {
		lib.BuildErr = strings.TrimSpace(string(out))
		fmt.Fprintf(r.opt.Log, "  %s: build failed, it will be reported as such:\n%s\n", lib.Name, out)
	} else {
		lib.Built = true
	}
	r.libs[lib.Name] = &lib
	r.bin[lib.Name] = bin
	r.res.Libs = append(r.res.Libs, lib)
	return nil
}

// hubTargets lists the hub-broadcast scenario's servers that can run.
func (r *runner) hubTargets() []hubTarget {
	out := []hubTarget{{lib: report.Hub}}
	if r.libs[report.Ours] != nil {
		out = append(out, hubTarget{lib: report.Ours, variant: "prepared"})
	}
	if r.libs["gws"] != nil {
		out = append(out, hubTarget{lib: "gws"})
	}
	return out
}

func (r *runner) has(scenario string) bool {
	for _, x := range r.opt.Scenarios {
		if x == scenario {
			return true
		}
	}
	return false
}

func duplexVersion(modDir string) string { return treeVersion(modDir, "../websocket") }

// treeVersion is the last commit that touched dir (relative to modDir).
func treeVersion(modDir, dir string) string {
	out, err := exec.Command("git", "-C", modDir, "log", "-1", "--format=%h %cs", "--", dir).Output()
	if err != nil || len(out) == 0 {
		return "working tree"
	}
	return "main@" + strings.TrimSpace(string(out)) + " (+ working tree)"
}

// plan lists every run: per round, per scenario cell, every library in an
// order rotated by the round, so that no library always runs first or last.
func (r *runner) plan() []task {
	o := r.opt
	var tasks []task
	has := r.has
	connectEst := func(n int) float64 { return 0.3 + float64(n)/8000 }
	echoEst := (o.Warmup + o.Duration).Seconds() + 0.5
	for round := 1; round <= o.Rounds; round++ {
		libs := rotate(o.Libs, round-1)
		if has(report.Echo) {
			for _, c := range o.EchoConns {
				for _, p := range o.Payloads {
					for _, l := range libs {
						l, c, p, round := l, c, p, round
						tasks = append(tasks, task{
							label: fmt.Sprintf("r%d echo %s c=%d %s", round, l, c, size(p)),
							est:   echoEst + connectEst(c),
							run:   func() []report.Record { return r.echo(report.Echo, l, round, c, p) },
						})
					}
				}
			}
		}
		if has(report.Idle) {
			last := o.IdleSteps[len(o.IdleSteps)-1]
			idleEst := 1 + float64(len(o.IdleSteps))*r.settleMin().Seconds()*1.5 + connectEst(last)
			for _, l := range libs {
				l, round := l, round
				tasks = append(tasks, task{
					label: fmt.Sprintf("r%d idle %s up to %d", round, l, last),
					est:   idleEst,
					run:   func() []report.Record { return r.idle(l, round) },
				})
			}
			if r.libs[report.Ours] != nil && !o.Short { // the experiment: Open against Accept + go
				round := round
				tasks = append(tasks, task{
					label: fmt.Sprintf("r%d idle duplex (Accept+go) up to %d", round, last),
					est:   idleEst,
					run:   func() []report.Record { return r.idleVariant(report.Ours, round, "accept") },
				})
			}
		}
		if has(report.DeflateIdle) {
			last := o.IdleSteps[len(o.IdleSteps)-1]
			idleEst := 1 + float64(len(o.IdleSteps))*r.settleMin().Seconds()*1.5 + connectEst(last)
			for _, l := range libs {
				if l == "tcp" {
					continue
				}
				variants := []string{""}
				if l == report.Ours {
					variants = append(variants, "nocontext")
				}
				for _, v := range variants {
					l, v, round := l, v, round
					name := l
					if v != "" {
						name += " (" + v + ")"
					}
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d deflate-idle %s up to %d", round, name, last),
						est:   idleEst,
						run:   func() []report.Record { return r.idleScenario(report.DeflateIdle, l, round, v) },
					})
				}
			}
		}
		if has(report.Broadcast) {
			for _, win := range o.Windows {
				for _, l := range libs {
					l, round, win := l, round, win
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d broadcast %s to %d w=%d", round, l, o.BroadcastSubs, win),
						est:   echoEst + 0.3 + connectEst(o.BroadcastSubs),
						run:   func() []report.Record { return r.broadcast(l, round, win) },
					})
				}
			}
		}
		if has(report.HubBroadcast) {
			for _, win := range o.Windows {
				for _, tg := range rotate(r.hubTargets(), round-1) {
					tg, round, win := tg, round, win
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d hub-broadcast %s to %d w=%d", round, tg, o.BroadcastSubs, win),
						est:   echoEst + 0.8 + 2*connectEst(o.BroadcastSubs),
						run:   func() []report.Record { return r.hubBroadcast(tg, round, win) },
					})
				}
			}
		}
		if has(report.Deflate) {
			for _, p := range o.DeflatePayloads {
				for _, l := range libs {
					if l == "tcp" {
						continue
					}
					l, p, round := l, p, round
					tasks = append(tasks, task{
						label: fmt.Sprintf("r%d deflate %s c=%d %s", round, l, o.DeflateConns, size(p)),
						est:   echoEst + connectEst(o.DeflateConns),
						run:   func() []report.Record { return r.echo(report.Deflate, l, round, o.DeflateConns, p) },
					})
				}
			}
		}
	}
	return tasks
}

func rotate[T any](s []T, k int) []T {
	out := make([]T, 0, len(s))
	for i := range s {
		out = append(out, s[(i+k)%len(s)])
	}
	return out
}

func size(n int) string { return report.Size(n) }

func proto(lib string) string {
	if lib == "tcp" {
		return "tcp"
	}
	return "ws"
}

// usable says why a library cannot run a scenario, or "" when it can.
func (r *runner) usable(lib string, rec *report.Record, compress bool) bool {
	l := r.libs[lib]
	switch {
	case !l.Built:
		rec.Err = "build failed"
		return false
	case compress && !l.Compression:
		rec.NA = true
		return false
	}
	return true
}

// echo runs one echo (or deflate) cell for one library.
func (r *runner) echo(scenario, lib string, round, conns, payload int) []report.Record {
	rec := report.Record{Scenario: scenario, Lib: lib, Round: round, Conns: conns, Payload: payload}
	compress := scenario == report.Deflate
	if !r.usable(lib, &rec, compress) {
		return []report.Record{rec}
	}
	args := []string{"-mode", "echo"}
	if compress {
		args = append(args, "-compress")
	}
	srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	defer srv.stop()
	cfg := loadgen.Config{Addr: srv.addr, Proto: proto(lib), Mode: loadgen.ModeEcho, Conns: conns, Payload: payload,
		Depth: r.opt.Depth, Compress: compress, Warmup: r.opt.Warmup, Duration: r.opt.Duration, Verify: true}
	m, res, err := r.measure(srv, cfg)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	if res.Msgs == 0 || res.Seconds == 0 {
		rec.Err = fmt.Sprintf("no echo in the measured window (%d before it; %d connected, %d failed, %d lost): %s",
			res.Total, res.Conns, res.Failed, res.Errors, srv.stderr)
		return []report.Record{rec}
	}
	rec.MsgsPerSec = float64(res.Msgs) / res.Seconds
	rec.P50, rec.P99, rec.P999 = res.P50, res.P99, res.P999
	rec.CPUPerMsg = m.serverCPU / float64(res.Msgs) * 1e6
	rec.ServerBusy, rec.LoadBusy = m.serverCPU/m.wall, m.loadCPU/m.wall
	rec.ReadsPerMsg, rec.WritesPerMsg = m.reads/float64(res.Msgs), m.writes/float64(res.Msgs)
	rec.Negotiated = res.Negotiated
	rec.ReplyBytes = float64(res.Bytes) / float64(res.Msgs)
	rec.Lost = int64(res.Errors + res.Failed)
	switch {
	case res.VerifyErr != "":
		rec.Err = "verify: " + res.VerifyErr
	case compress && res.Negotiated == 0:
		rec.Err = "permessage-deflate was not negotiated"
	}
	return []report.Record{rec}
}

// window is what measure read: over the measured window, and setupCPU, the
// server's CPU time from its start until the load generator said "ready"
// (broadcast: every subscriber connected, and subscribed where it must).
type window struct{ serverCPU, loadCPU, wall, reads, writes, setupCPU float64 }

// measure runs the load generator and reads the server's and the
// generator's CPU time at the start and end of the measured window.
func (r *runner) measure(srv *server, cfg loadgen.Config) (window, loadgen.Result, error) {
	lp, err := startLoad(r.opt.Self, r.opt.LoadCPU, cfg)
	if err != nil {
		return window{}, loadgen.Result{}, err
	}
	var s0, s1, r0, r1, w0, w1, setup float64
	var t0, t1 time.Time
	timeout := time.After(cfg.Warmup + cfg.Duration + 3*time.Minute)
loop:
	for {
		select {
		case ev, ok := <-lp.events:
			if !ok {
				break loop
			}
			switch ev.Kind {
			case "ready":
				setup, _ = cpuSeconds(srv.pid)
			case "measure-start":
				s0, _ = cpuSeconds(srv.pid)
				r0, w0 = ioCalls(srv.pid)
				t0 = time.Now()
				if srv.profileWindow {
					srv.send("profile start")
				}
			case "measure-end":
				if srv.profileWindow {
					srv.send("profile stop")
				}
				s1, _ = cpuSeconds(srv.pid)
				r1, w1 = ioCalls(srv.pid)
				t1 = time.Now()
				break loop
			}
		case <-timeout:
			break loop
		}
	}
	res, err := lp.wait(time.Minute)
	if err != nil {
		return window{}, res, err
	}
	if t1.IsZero() {
		return window{}, res, fmt.Errorf("the run did not finish: %+v", res)
	}
	return window{serverCPU: s1 - s0, loadCPU: res.CPU, wall: t1.Sub(t0).Seconds(), reads: r1 - r0, writes: w1 - w0, setupCPU: setup}, res, nil
}

func (r *runner) settleMin() time.Duration {
	if r.opt.Short {
		return 500 * time.Millisecond
	}
	return 1500 * time.Millisecond
}

// settledRSS waits for the server's RSS to stop moving and returns it.
func (r *runner) settledRSS(pid int) int64 {
	time.Sleep(r.settleMin())
	prev, _ := rssBytes(pid)
	for i := 0; i < 25; i++ {
		time.Sleep(200 * time.Millisecond)
		cur, _ := rssBytes(pid)
		d := cur - prev
		if d < 0 {
			d = -d
		}
		if float64(d) < 0.002*float64(cur) {
			return cur
		}
		prev = cur
	}
	return prev
}

// idle opens the idle steps' connection counts one after the other on one
// server and reads its RSS at each, once it has settled.
func (r *runner) idle(lib string, round int) []report.Record {
	return r.idleVariant(lib, round, "")
}

// idleVariant is idle for a server variant ("" is the server as its README
// has it; duplex's "accept" serves from Accept and a goroutine of its own).
func (r *runner) idleVariant(lib string, round int, variant string) []report.Record {
	scenario := report.Idle
	if variant != "" {
		scenario = report.IdleVariant
	}
	return r.idleScenario(scenario, lib, round, variant)
}

// deflateChat is how many compressed messages each connection of the
// deflate-idle scenario sends (and has echoed) before it goes idle.
const deflateChat = 3

// idleScenario is idle (scenario Idle or IdleVariant) or, for DeflateIdle,
// idle after negotiating permessage-deflate and exchanging deflateChat
// compressed messages per connection.
func (r *runner) idleScenario(scenario, lib string, round int, variant string) []report.Record {
	compress := scenario == report.DeflateIdle
	base := report.Record{Scenario: scenario, Lib: lib, Round: round, Variant: variant}
	fail := func(err string) []report.Record {
		var out []report.Record
		for _, n := range r.opt.IdleSteps {
			rec := base
			rec.Conns, rec.Err = n, err
			out = append(out, rec)
		}
		return out
	}
	if !r.usable(lib, &base, compress) {
		return fail(base.Err)
	}
	args := []string{"-mode", "echo"}
	if variant != "" {
		args = append(args, "-variant", variant)
	}
	cfg := loadgen.Config{Proto: proto(lib), Mode: loadgen.ModeIdle}
	if compress {
		args = append(args, "-compress")
		cfg.Compress, cfg.Chat = true, deflateChat
	}
	srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
	if err != nil {
		return fail(err.Error())
	}
	defer srv.stop()
	rss0 := r.settledRSS(srv.pid)
	steps := r.opt.IdleSteps
	cfg.Addr, cfg.Conns = srv.addr, steps[0]
	lp, err := startLoad(r.opt.Self, r.opt.LoadCPU, cfg)
	if err != nil {
		return fail(err.Error())
	}
	var out []report.Record
	for i, n := range steps {
		rec := base
		rec.Conns = n
		var ev loadgen.Event
		var ok bool
		select {
		case ev, ok = <-lp.events:
		case <-time.After(3 * time.Minute):
		}
		if !ok || ev.Kind != "connected" {
			_, err := lp.wait(5 * time.Second)
			for _, m := range steps[i:] {
				rec.Conns, rec.Err = m, fmt.Sprintf("connecting failed: %v", err)
				out = append(out, rec)
			}
			return out
		}
		rss := r.settledRSS(srv.pid)
		rec.RSSBase, rec.RSS = rss0, rss
		rec.BytesPerConn = float64(rss-rss0) / float64(ev.N)
		if ev.N < n {
			rec.Lost = int64(n - ev.N)
			rec.Err = fmt.Sprintf("only %d of %d connections opened", ev.N, n)
		}
		out = append(out, rec)
		if i+1 < len(steps) {
			lp.send(fmt.Sprintf("grow %d", steps[i+1]))
		}
	}
	lp.send("stop")
	res, err := lp.wait(time.Minute)
	switch {
	case err != nil:
		out[len(out)-1].Err = err.Error()
	case compress:
		out[len(out)-1].Negotiated = res.Negotiated
		switch want := int64(deflateChat) * int64(res.Conns); {
		case res.Negotiated < res.Conns:
			out[len(out)-1].Err = fmt.Sprintf("permessage-deflate negotiated on %d of %d connections", res.Negotiated, res.Conns)
		case res.Errors > 0 || res.Total < want:
			out[len(out)-1].Err = fmt.Sprintf("%d of %d messages echoed, %d connections lost", res.Total, want, res.Errors)
		}
	}
	return out
}

// broadcast runs the fan-out scenario for one library.
func (r *runner) broadcast(lib string, round, window int) []report.Record {
	rec := report.Record{Scenario: report.Broadcast, Lib: lib, Round: round, Conns: r.opt.BroadcastSubs, Payload: r.opt.BroadcastPayload, Window: window}
	cfg := loadgen.Config{Proto: proto(lib), Mode: loadgen.ModeBroadcast, Conns: r.opt.BroadcastSubs,
		Payload: r.opt.BroadcastPayload, Window: window, Warmup: r.opt.Warmup, Duration: r.opt.Duration}
	return r.broadcastRun(rec, cfg, "-mode", "broadcast")
}

// hubBroadcast runs the hub-broadcast scenario for one of its servers: the
// broadcast scenario with JSON text messages carrying their send time, and
// for the hub the protocol's connect and subscribe before the run.
func (r *runner) hubBroadcast(tg hubTarget, round, window int) []report.Record {
	rec := report.Record{Scenario: report.HubBroadcast, Lib: tg.lib, Variant: tg.variant, Round: round,
		Conns: r.opt.BroadcastSubs, Payload: r.opt.BroadcastPayload, Window: window}
	cfg := loadgen.Config{Proto: "ws", Mode: loadgen.ModeBroadcast, Conns: r.opt.BroadcastSubs, JSON: true,
		Payload: r.opt.BroadcastPayload, Window: window, Warmup: r.opt.Warmup, Duration: r.opt.Duration}
	if tg.lib == report.Hub {
		cfg.HubRoom = hubRoom
	}
	return r.broadcastRun(rec, cfg, hubArgs(tg)...)
}

func hubArgs(tg hubTarget) []string {
	args := []string{"-mode", "broadcast"}
	if tg.variant != "" {
		args = append(args, "-variant", tg.variant)
	}
	return args
}

// broadcastRun measures one broadcast cell: rec says which, cfg is the load
// (its address filled in here), args the server's.
func (r *runner) broadcastRun(rec report.Record, cfg loadgen.Config, args ...string) []report.Record {
	lib := rec.Lib
	if !r.usable(lib, &rec, false) {
		return []report.Record{rec}
	}
	srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	defer srv.stop()
	cfg.Addr = srv.addr
	m, res, err := r.measure(srv, cfg)
	if err != nil {
		rec.Err = err.Error()
		return []report.Record{rec}
	}
	if res.Deliveries == 0 {
		rec.Err = fmt.Sprintf("nothing delivered (%d connected, %d failed): %s", res.Conns, res.Failed, srv.stderr)
		return []report.Record{rec}
	}
	rec.DeliveriesPerSec = float64(res.Deliveries) / res.Seconds
	rec.ReplyBytes = float64(res.Bytes) / float64(res.Deliveries)
	rec.SetupCPU = m.setupCPU
	rec.P50, rec.P99, rec.P999 = res.P50, res.P99, res.P999
	rec.CPUPerMsg = m.serverCPU / float64(res.Deliveries) * 1e6
	rec.ServerBusy, rec.LoadBusy = m.serverCPU/m.wall, m.loadCPU/m.wall
	rec.ReadsPerMsg, rec.WritesPerMsg = m.reads/float64(res.Deliveries), m.writes/float64(res.Deliveries)
	rec.Lost = res.Lost
	switch {
	case res.Failed > 0 || res.Errors > 0:
		rec.Err = fmt.Sprintf("%d connections failed, %d lost", res.Failed, res.Errors)
	case res.VerifyErr != "":
		rec.Err = "verify: " + res.VerifyErr
	case cfg.HubRoom != "" && res.Subscribed < cfg.Conns:
		rec.Err = fmt.Sprintf("only %d of %d subscribed", res.Subscribed, cfg.Conns)
	}
	return []report.Record{rec}
}

// profile runs, for one library, the echo cells with the most connections
// and the smallest and largest payloads, deflate at its largest payload and
// broadcast with one message in flight, each with the server's CPU profile
// on, and keeps each profile with its top functions (flat and cumulative)
// in <out>/profile.
func (r *runner) profile(lib string) error {
	l := r.libs[lib]
	if l == nil || !l.Built {
		return fmt.Errorf("%s was not built", lib)
	}
	dir := filepath.Join(r.opt.Out, "profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	type run = profileRun
	if lib == report.Hub {
		// The hub under the hub-broadcast load, and the raw loop beside it,
		// at each window; the measured window only, as the hub's subscribe
		// phase would otherwise weigh in.
		var runs []run
		for _, win := range r.opt.Windows {
			for _, tg := range r.hubTargets() {
				name := "hub"
				switch {
				case tg.variant == "prepared":
					name = "duplex-prepared-hub"
				case tg.lib != report.Hub:
					continue
				}
				cfg := loadgen.Config{Mode: loadgen.ModeBroadcast, Conns: r.opt.BroadcastSubs, JSON: true,
					Payload: r.opt.BroadcastPayload, Window: win}
				if tg.lib == report.Hub {
					cfg.HubRoom = hubRoom
				}
				runs = append(runs, run{lib: tg.lib, name: fmt.Sprintf("%s-broadcast-%d-w%d", name, r.opt.BroadcastSubs, win),
					args: hubArgs(tg), cfg: cfg, window: true})
			}
		}
		return r.profileRuns(dir, runs)
	}
	conns := r.opt.EchoConns[len(r.opt.EchoConns)-1]
	payloads := []int{r.opt.Payloads[0], r.opt.Payloads[len(r.opt.Payloads)-1]}
	sort.Ints(payloads)
	compact := func(n int) string { return strings.ReplaceAll(size(n), " ", "") }
	var runs []run
	for _, p := range payloads {
		runs = append(runs, run{name: fmt.Sprintf("%s-echo-c%d-%s", lib, conns, compact(p)), args: []string{"-mode", "echo"},
			cfg: loadgen.Config{Mode: loadgen.ModeEcho, Conns: conns, Payload: p, Depth: r.opt.Depth}})
	}
	if l.Compression {
		p := r.opt.DeflatePayloads[len(r.opt.DeflatePayloads)-1]
		runs = append(runs, run{name: fmt.Sprintf("%s-deflate-c%d-%s", lib, r.opt.DeflateConns, compact(p)), args: []string{"-mode", "echo", "-compress"},
			cfg: loadgen.Config{Mode: loadgen.ModeEcho, Conns: r.opt.DeflateConns, Payload: p, Depth: r.opt.Depth, Compress: true}})
	}
	runs = append(runs, run{name: fmt.Sprintf("%s-broadcast-%d-w1", lib, r.opt.BroadcastSubs), args: []string{"-mode", "broadcast"},
		cfg: loadgen.Config{Mode: loadgen.ModeBroadcast, Conns: r.opt.BroadcastSubs, Payload: r.opt.BroadcastPayload, Window: 1}})
	for i := range runs {
		runs[i].lib = lib
	}
	return r.profileRuns(dir, runs)
}

// profileRun is one profiled run: the server's library and arguments, the
// load, and the name of its files.
type profileRun struct {
	lib    string
	name   string
	args   []string
	cfg    loadgen.Config
	window bool // profile the measured window only, not the connect phase
}

// profileRuns runs each server with its CPU profile on under its load for
// three measured windows and keeps its top functions, flat and cumulative,
// in dir/<name>.top.txt.
func (r *runner) profileRuns(dir string, runs []profileRun) error {
	for _, x := range runs {
		lib := x.lib
		prof, _ := filepath.Abs(filepath.Join(dir, x.name+".pprof"))
		fmt.Fprintf(r.opt.Log, "profiling %s...\n", x.name)
		args := append(append([]string{}, x.args...), "-cpuprofile", prof)
		if x.window {
			args = append(args, "-profile-window")
		}
		srv, err := startServer(r.bin[lib], r.opt.ServerCPU, args...)
		if err != nil {
			return err
		}
		srv.profileWindow = x.window
		cfg := x.cfg
		cfg.Addr, cfg.Proto, cfg.Warmup, cfg.Duration = srv.addr, proto(lib), r.opt.Warmup, 3*r.opt.Duration
		_, _, err = r.measure(srv, cfg)
		srv.stop()
		if err != nil {
			return err
		}
		var text []byte
		for _, mode := range [][]string{{"-top"}, {"-top", "-cum"}} {
			args := append(append([]string{"tool", "pprof"}, mode...), "-nodecount=45", r.bin[lib], prof)
			out, err := exec.Command("go", args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("pprof: %v: %s", err, out)
			}
			text = append(append(text, out...), '\n')
		}
		if err := os.WriteFile(filepath.Join(dir, x.name+".top.txt"), text, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(r.opt.Log, "  %s\n", filepath.Join(dir, x.name+".top.txt"))
	}
	return nil
}

// machine describes this machine.
func machine(fdLimit uint64) report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), FDLimit: fdLimit, LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(line)[1:], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	} else {
		m.GoVersion = runtime.Version()
	}
	return m
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
