package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/duplexws/duplex/bench/internal/loadgen"
	"github.com/duplexws/duplex/bench/internal/report"
)

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
