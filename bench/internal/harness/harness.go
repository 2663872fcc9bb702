// Package harness runs the side-by-side benchmark: it builds every server,
// pins each server and the load generator to their own cores, runs the
// scenarios with the libraries interleaved round-robin over several rounds,
// and hands the records to the report.
//
// Files by concern: build.go builds the servers and describes the machine;
// plan.go lists a run's cells; echo.go, idle.go and broadcast.go run one
// cell of their scenarios; measure.go reads a measured window from /proc
// (proc.go: the /proc readers and the child processes); profile.go keeps
// CPU profiles under load.
package harness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"syscall"
	"time"

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

	// IdleRounds are the rounds that also run the idle and deflate-idle
	// scenarios, the first ones (default and at most Rounds): memory is
	// slow to ramp up and does not drift between rounds as CPU does.
	IdleRounds int

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
	DeflateIdleSteps []int // deflate-idle: connection counts

	// pipelined echo: PipelinedDepth messages in flight per connection
	PipelinedConns    int
	PipelinedPayloads []int
	PipelinedDepth    int

	// DuplexVariants are servers/duplex -variant values run in the idle
	// scenario beside Duplex's README idiom (Open), one curve each. nil is
	// the default: in the full run, those of duplexIdleModes the built
	// server lists in its features; none in the short run. Empty: none.
	DuplexVariants []string
	// DuplexEchoVariants are servers/duplex -variant values run in the echo
	// and pipelined scenarios beside Open, in each cell right after the
	// libraries. nil is the default: those of duplexEchoModes the built
	// server lists (short run too: a few seconds). Empty: none.
	DuplexEchoVariants []string
	// NoHijackFloor leaves out the net/http hijack floor (servers/tcp
	// -variant hijack), which the idle scenario otherwise runs whenever
	// the TCP floor runs.
	NoHijackFloor bool
}

// duplexDeflateVariants are the Duplex servers of the deflate scenarios:
// with context takeover (its default) and without (-variant nocontext),
// so that it meets each peer in the peer's own mode.
var duplexDeflateVariants = []string{"", "nocontext"}

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
		defInts(&o.PipelinedPayloads, 64)
		defInts(&o.DeflateIdleSteps, 1000)
	} else {
		def(&o.Rounds, 3)
		defDur(&o.Warmup, time.Second)
		defDur(&o.Duration, 3*time.Second)
		defInts(&o.EchoConns, 100, 1000)
		defInts(&o.Payloads, 64, 1<<10, 16<<10, 64<<10)
		defInts(&o.IdleSteps, 1000, 5000, 10000, maxN)
		def(&o.BroadcastSubs, min(10000, maxN-1))
		defInts(&o.DeflatePayloads, 1<<10, 16<<10)
		defInts(&o.PipelinedPayloads, 64, 1<<10)
		defInts(&o.DeflateIdleSteps, 5000)
	}
	if o.IdleRounds == 0 || o.IdleRounds > o.Rounds {
		o.IdleRounds = o.Rounds
	}
	def(&o.PipelinedConns, 100)
	def(&o.PipelinedDepth, 16)
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
		o.Scenarios = []string{report.Echo, report.Pipelined, report.Idle, report.Broadcast, report.Deflate, report.DeflateIdle}
		if o.Short { // a minute and a half: deflate-idle only when asked (-scenarios)
			o.Scenarios = slices.DeleteFunc(o.Scenarios, func(s string) bool { return s == report.DeflateIdle })
		}
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

// duplexIdleModes are Duplex's modes besides Open that the full run's idle
// scenario measures when servers/duplex serves them: Accept + a goroutine,
// and the event loop.
var duplexIdleModes = []string{"accept", "events"}

// duplexEchoModes are Duplex's modes besides Open that the echo and
// pipelined scenarios measure by default when servers/duplex serves them:
// the event loop, whose echo throughput issue 12 wants within 10% of
// Open's. Accept + a goroutine serves messages as Open does, so it runs
// only when asked (-duplex-echo-variants accept,events): each mode adds
// about 2.4 minutes to the full run.
var duplexEchoModes = []string{"events"}

// defaultDuplexVariants fills in DuplexVariants and DuplexEchoVariants once
// the servers are built: the modes servers/duplex lists (idle: in the full
// run only).
func (r *runner) defaultDuplexVariants() {
	listed := func(modes []string) []string {
		out := []string{}
		for _, v := range modes {
			if slices.Contains(r.variants[report.Ours], v) {
				out = append(out, v)
			}
		}
		return out
	}
	if r.opt.DuplexVariants == nil {
		r.opt.DuplexVariants = []string{}
		if !r.opt.Short {
			r.opt.DuplexVariants = listed(duplexIdleModes)
		}
	}
	if r.opt.DuplexEchoVariants == nil {
		r.opt.DuplexEchoVariants = listed(duplexEchoModes)
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
	// variants are the -variant values each built server lists.
	variants map[string][]string
	res      *report.Results
	prog     *progress
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
	r := &runner{opt: opt, libs: map[string]*report.Lib{}, bin: map[string]string{}, variants: map[string][]string{}}
	r.res = &report.Results{Started: time.Now()}
	r.res.Machine = machine(fdLimit)
	r.res.Settings = report.Settings{Command: opt.Command, Short: opt.Short, Rounds: opt.Rounds, IdleRounds: opt.IdleRounds, ShuffledOrder: true,
		Warmup: opt.Warmup, Duration: opt.Duration, ServerCPU: opt.ServerCPU, LoadCPU: opt.LoadCPU,
		Depth: opt.Depth, Windows: opt.Windows, PipelinedDepth: opt.PipelinedDepth}
	m := r.res.Machine
	fmt.Fprintf(opt.Log, "machine: %d cores, %s, %s, Linux %s, open-file limit %d, load average %s\n",
		m.Cores, m.CPUModel, m.GoVersion, m.Kernel, m.FDLimit, m.LoadStart)
	if runtime.NumCPU() < 2 {
		fmt.Fprintln(opt.Log, "warning: fewer than 2 cores; server and load share one")
	}

	if err := r.build(); err != nil {
		return nil, err
	}
	r.defaultDuplexVariants()
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

func (r *runner) has(scenario string) bool {
	for _, x := range r.opt.Scenarios {
		if x == scenario {
			return true
		}
	}
	return false
}
