// Package soak is the soak benchmark: the real duplex server binary, its
// echo endpoint (/chat/connect) with keepalive pings on, holding 10k
// connections that each send a small message every 10–30 s, for minutes;
// server RSS, goroutines and GC pauses are sampled from its /metrics over
// time and written as JSON, markdown and a plot. It answers the question a
// throughput benchmark does not: does a long-lived, mostly idle load leak
// memory or goroutines, or bring long GC pauses?
//
// The server and the load are separate processes (the open-file limit is
// per process); the load process is this binary ("soak load"), with one
// websocket.Conn and one reading goroutine per connection, as a Go client
// application has.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is one soak run.
type Config struct {
	ModDir  string // the bench module's directory; the server is built from its parent
	Self    string // this binary, run as "soak load" for the load process
	Command string // the command line, for the report

	Load     LoadConfig    // URL is set by Run
	Hold     time.Duration // how long all connections are held once open
	After    time.Duration // how long the server is watched after the connections are closed
	Sample   time.Duration // sampling interval
	Out      string        // directory of the outputs
	Name     string        // base name of the outputs: Name.json, Name.md, Name.png
	LogTo    io.Writer     // progress lines
	MaxConns int           // the server's -max-connections
}

// Phases of a run, as recorded in each sample.
const (
	PhaseBaseline = "baseline" // server up, no connection
	PhaseRamp     = "ramp"     // connections opening
	PhaseHold     = "hold"     // all open, messages trickling
	PhaseAfter    = "after"    // connections closed
)

// Sample is the state of the server (from its /metrics) and the load at one time.
type Sample struct {
	T              float64   `json:"t_s"` // seconds since the server started
	Phase          string    `json:"phase"`
	RSSBytes       float64   `json:"rss_bytes"`
	HeapInuseBytes float64   `json:"heap_inuse_bytes"`
	Goroutines     float64   `json:"goroutines"`
	Connections    float64   `json:"connections"` // the server's open echo WebSockets
	CPUSeconds     float64   `json:"cpu_seconds"`
	GCCount        float64   `json:"gc_count"`
	GCPauseMeanMs  float64   `json:"gc_pause_mean_ms"` // mean stop-the-world pause of the GCs since the previous sample (0: none)
	GCPauseP50Ms   float64   `json:"gc_pause_p50_ms"`  // median and largest of the last (up to 256) pauses, as go_gc_duration_seconds reports them
	GCPauseMaxMs   float64   `json:"gc_pause_max_ms"`
	MsgsIn         float64   `json:"msgs_in"` // the server's counters of echo messages
	MsgsOut        float64   `json:"msgs_out"`
	Load           LoadStats `json:"load"`
}

// Result is what a run writes to Name.json.
type Result struct {
	Command   string    `json:"command"`
	Date      string    `json:"date"`
	Cores     int       `json:"cores"`
	LoadAvg   string    `json:"load_average"` // /proc/loadavg's first three at the start: how quiet the machine was
	GoVersion string    `json:"go_version"`
	Server    string    `json:"server"` // the server's command line
	Config    Config    `json:"config"`
	Samples   []Sample  `json:"samples"`
	Final     LoadStats `json:"final"` // the load's counters after every connection closed
	Summary   Summary   `json:"summary"`
}

// Run builds and starts the server, opens the connections, holds them, closes
// them, watches the server settle and writes the outputs.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(cfg.LogTo, "soak: "+format+"\n", a...) }
	bin := filepath.Join(cfg.ModDir, "bin", "duplex-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/duplex")
	build.Dir = filepath.Dir(cfg.ModDir)
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the duplex server: %v\n%s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "duplex-soak")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	args := []string{"-addr", addr, "-broker", "memory", "-data-dir", dataDir, "-log-level", "warn",
		"-max-connections", strconv.Itoa(cfg.MaxConns)}
	srv := exec.Command(bin, args...)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return nil, err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-srvDone:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-srvDone
		}
	}()
	started := time.Now()
	base := "http://" + addr
	if err := awaitHealthy(ctx, base+"/healthz", srvDone); err != nil {
		return nil, err
	}
	res := &Result{
		Command: cfg.Command, Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), LoadAvg: loadAverage(),
		GoVersion: runtime.Version(), Server: "duplex " + strings.Join(args, " "), Config: cfg,
	}
	res.Config.Load.URL = "ws://" + addr + "/chat/connect"
	s := &sampler{url: base + "/metrics", started: started}
	take := func(phase string, load LoadStats) error {
		sm, err := s.take(ctx, phase, load)
		if err != nil {
			return err
		}
		res.Samples = append(res.Samples, sm)
		logf("%5.0fs %-8s rss %4.0f MiB, goroutines %6.0f, conns %5.0f, gc %3.0f (last pause max %.2f ms), sent %d, echoed %d",
			sm.T, phase, sm.RSSBytes/(1<<20), sm.Goroutines, sm.Connections, sm.GCCount, sm.GCPauseMaxMs, load.Sent, load.Echoed)
		return nil
	}
	if err := take(PhaseBaseline, LoadStats{}); err != nil {
		return nil, err
	}

	load, err := startLoad(cfg.Self, res.Config.Load, cfg.Sample)
	if err != nil {
		return nil, err
	}
	defer load.kill()
	phase, holdEnd := PhaseRamp, time.Time{}
	for phase != PhaseAfter {
		var st LoadStats
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-srvDone:
			return nil, fmt.Errorf("the server exited: %v", err)
		case l, ok := <-load.stats:
			if !ok {
				return nil, fmt.Errorf("the load process exited: %v", load.wait())
			}
			st = l
		}
		if phase == PhaseRamp && st.Dialed+st.DialErrors >= int64(cfg.Load.Conns) {
			logf("ramp done: %d open, %d dial errors", st.Open, st.DialErrors)
			phase, holdEnd = PhaseHold, time.Now().Add(cfg.Hold)
		}
		if err := take(phase, st); err != nil {
			return nil, err
		}
		if phase == PhaseHold && time.Now().After(holdEnd) {
			phase = PhaseAfter
		}
	}
	logf("closing the connections")
	final, err := load.stop()
	if err != nil {
		return nil, err
	}
	res.Final = final
	for end := time.Now().Add(cfg.After); time.Now().Before(end); {
		time.Sleep(cfg.Sample)
		if err := take(PhaseAfter, final); err != nil {
			return nil, err
		}
	}
	res.Summary = summarize(res)
	if err := write(res, cfg.Out, cfg.Name); err != nil {
		return nil, err
	}
	return res, nil
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func awaitHealthy(ctx context.Context, url string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the server exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the server did not answer /healthz within 30 s")
		}
	}
}

// sampler turns scrapes of the server's /metrics into samples.
type sampler struct {
	url     string
	started time.Time
	prev    metrics
}

func (s *sampler) take(ctx context.Context, phase string, load LoadStats) (Sample, error) {
	m, err := scrape(ctx, s.url)
	if err != nil {
		return Sample{}, err
	}
	const ms = 1000
	sm := Sample{
		T: time.Since(s.started).Seconds(), Phase: phase,
		RSSBytes:       m["process_resident_memory_bytes"],
		HeapInuseBytes: m["go_memstats_heap_inuse_bytes"],
		Goroutines:     m["go_goroutines"],
		Connections:    m[`duplex_websocket_connections{endpoint="echo"}`],
		CPUSeconds:     m["process_cpu_seconds_total"],
		GCCount:        m["go_gc_duration_seconds_count"],
		GCPauseP50Ms:   m[`go_gc_duration_seconds{quantile="0.5"}`] * ms,
		GCPauseMaxMs:   m[`go_gc_duration_seconds{quantile="1"}`] * ms,
		MsgsIn:         m[`duplex_websocket_messages_received_total{endpoint="echo"}`],
		MsgsOut:        m[`duplex_websocket_messages_sent_total{endpoint="echo"}`],
		Load:           load,
	}
	if s.prev != nil {
		if n := sm.GCCount - s.prev["go_gc_duration_seconds_count"]; n > 0 {
			sm.GCPauseMeanMs = (m["go_gc_duration_seconds_sum"] - s.prev["go_gc_duration_seconds_sum"]) / n * ms
		}
	}
	s.prev = m
	return sm, nil
}

// loadProc is the running load process.
type loadProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	stats chan LoadStats // every STAT line; closed when the process's stdout ends
	final chan LoadStats
	done  chan error
}

func startLoad(self string, c LoadConfig, every time.Duration) (*loadProc, error) {
	cmd := exec.Command(self, "load", "-url", c.URL, "-conns", strconv.Itoa(c.Conns), "-rate", strconv.Itoa(c.Rate),
		"-min", c.MinInterval.String(), "-max", c.MaxInterval.String(), "-every", every.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &loadProc{cmd: cmd, stdin: stdin, stats: make(chan LoadStats, 16), final: make(chan LoadStats, 1), done: make(chan error, 1)}
	go func() {
		defer close(p.stats)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, body, _ := strings.Cut(sc.Text(), " ")
			var st LoadStats
			if json.Unmarshal([]byte(body), &st) != nil {
				continue
			}
			switch kind {
			case "STAT":
				select {
				case p.stats <- st:
				default: // the sampler is behind: it takes the next one
				}
			case "DONE":
				p.final <- st
			}
		}
		p.done <- cmd.Wait()
	}()
	return p, nil
}

// stop closes the load's stdin, which closes every connection, and returns
// its final counters.
func (p *loadProc) stop() (LoadStats, error) {
	_ = p.stdin.Close()
	go func() {
		for range p.stats { // drain, so that the reader reaches the DONE line
		}
	}()
	select {
	case st := <-p.final:
		return st, nil
	case err := <-p.done:
		return LoadStats{}, fmt.Errorf("the load process exited without its final counters: %v", err)
	case <-time.After(2 * time.Minute):
		return LoadStats{}, errors.New("the load process did not close its connections within 2 minutes")
	}
}

func (p *loadProc) wait() error { return <-p.done }

func (p *loadProc) kill() {
	_ = p.cmd.Process.Kill()
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures, or "" where
// there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
