package harness

import (
	"fmt"
	"time"

	"github.com/duplexws/duplex/bench/internal/loadgen"
)

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
