package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/bench/internal/loadgen"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds reads the user+system CPU time of a process from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// the command name, field 2, may hold spaces: the fields after it follow the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks, nil
}

// ioCalls reads the read-type and write-type system calls a process made
// (syscr, syscw of /proc/<pid>/io: read, readv, write, writev on any file,
// sockets included; not epoll_wait, not sendmsg/recvmsg).
func ioCalls(pid int) (reads, writes float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}

// rssBytes reads the resident set size of a process (VmRSS).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// tail keeps the last bytes written to it, for error messages.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-2048:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// server is a running benchmark server process.
type server struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tail
	addr   string
	pid    int

	profileWindow bool // started with -profile-window: told when the measured window starts and ends
}

// send writes one control line to the server ("profile start", "profile stop").
func (s *server) send(line string) { _, _ = io.WriteString(s.stdin, line+"\n") }

// startServer starts a server binary pinned to cpu with GOMAXPROCS=1 and
// waits for its LISTEN line.
func startServer(bin, cpu string, args ...string) (*server, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpu, bin}, args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	s := &server{cmd: cmd, stderr: &tail{}}
	cmd.Stderr = s.stderr
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.pid = cmd.Process.Pid // taskset execs the server in place: same pid
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				line <- a
			}
		}
		close(line)
	}()
	select {
	case a, ok := <-line:
		if !ok {
			_ = cmd.Wait()
			return nil, fmt.Errorf("server exited: %s", s.stderr)
		}
		s.addr = a
		return s, nil
	case <-time.After(15 * time.Second):
		s.stop()
		return nil, fmt.Errorf("server did not listen: %s", s.stderr)
	}
}

// stop closes the server's stdin (it stops itself), then kills it if needed.
func (s *server) stop() {
	_ = s.stdin.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// loadProc is a running load generator process ("bench loadgen").
type loadProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tail
	events chan loadgen.Event
	result chan loadLine
	pid    int
}

type loadLine struct {
	res loadgen.Result
	err error
}

// LoadArgs turns a loadgen config into the flags of "bench loadgen".
func LoadArgs(c loadgen.Config) []string {
	return []string{"loadgen",
		"-addr", c.Addr, "-proto", c.Proto, "-mode", c.Mode,
		"-conns", strconv.Itoa(c.Conns), "-payload", strconv.Itoa(c.Payload),
		"-depth", strconv.Itoa(c.Depth), "-window", strconv.Itoa(c.Window),
		"-compress=" + strconv.FormatBool(c.Compress),
		"-warmup", c.Warmup.String(), "-duration", c.Duration.String(),
		"-per-ip", strconv.Itoa(c.PerIP), "-verify=" + strconv.FormatBool(c.Verify),
		"-chat", strconv.Itoa(c.Chat),
		"-json=" + strconv.FormatBool(c.JSON), "-hub-room", c.HubRoom, "-pub-path", c.PubPath,
	}
}

func startLoad(self, cpu string, c loadgen.Config) (*loadProc, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpu, self}, LoadArgs(c)...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	p := &loadProc{cmd: cmd, stderr: &tail{}, events: make(chan loadgen.Event, 16), result: make(chan loadLine, 1)}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pid = cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		got := false
		for sc.Scan() {
			line := sc.Text()
			if ev, ok := strings.CutPrefix(line, "EVENT "); ok {
				f := strings.Fields(ev)
				e := loadgen.Event{Kind: f[0]}
				if len(f) > 1 {
					e.N, _ = strconv.Atoi(f[1])
				}
				p.events <- e
			} else if js, ok := strings.CutPrefix(line, "RESULT "); ok {
				var r loadgen.Result
				err := json.Unmarshal([]byte(js), &r)
				p.result <- loadLine{r, err}
				got = true
			}
		}
		err := cmd.Wait()
		close(p.events)
		if !got {
			p.result <- loadLine{err: fmt.Errorf("load generator failed (%v): %s", err, p.stderr)}
		}
	}()
	return p, nil
}

// send writes one control line ("grow N" or "stop").
func (p *loadProc) send(line string) { _, _ = io.WriteString(p.stdin, line+"\n") }

// wait returns the run's result, killing the generator after timeout.
func (p *loadProc) wait(timeout time.Duration) (loadgen.Result, error) {
	deadline := time.After(timeout)
	events := p.events
	for {
		select {
		case _, ok := <-events: // drain what nobody reads
			if !ok {
				events = nil
			}
		case r := <-p.result:
			return r.res, r.err
		case <-deadline:
			_ = p.cmd.Process.Kill()
			return loadgen.Result{}, errors.New("load generator timed out")
		}
	}
}
