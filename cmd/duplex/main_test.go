package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, the browser test
// included, with no exception: that test cancels its chromedp contexts before
// it returns, and the allocator's cancel func waits for the browser process
// and for chromedp's goroutines that read its pipe, so nothing of chromedp is
// left to ignore. (Checked with -count=5; should a chromedp upgrade leave
// something, ignore that one function with goleak.IgnoreTopFunction and say
// why here, rather than ignoring by package.)
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait of these tests.
const testTimeout = 20 * time.Second

// logSink collects the server's log output (from run in-process or from the
// binary) and reports the address of its "listening" line.
type logSink struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	listening chan string // receives the address once
	sent      bool
}

func newLogSink() *logSink { return &logSink{listening: make(chan string, 1)} }

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	if !s.sent {
		if m := listeningLine.FindSubmatch(s.buf.Bytes()); m != nil {
			s.listening <- string(m[1])
			s.sent = true
		}
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitListening returns the address the server listens on.
func (s *logSink) waitListening(t *testing.T) string {
	t.Helper()
	select {
	case addr := <-s.listening:
		return addr
	case <-time.After(testTimeout):
		t.Fatalf("the server did not log that it listens; its output:\n%s", s)
		return ""
	}
}

// linesWith returns the log lines that contain every one of words.
func (s *logSink) linesWith(words ...string) []string {
	var out []string
	for _, line := range strings.Split(s.String(), "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok && line != "" {
			out = append(out, line)
		}
	}
	return out
}

// server is run started in-process.
type server struct {
	addr string
	logs *logSink
	stop func() error // cancels run's context and returns its error
}

// startRun starts run in-process with args and environment env, and waits
// until it listens. The server is stopped at the end of the test if the test
// has not stopped it.
func startRun(t *testing.T, args []string, env map[string]string) *server {
	t.Helper()
	return launchRun(t, args, env).await(t, testTimeout)
}

// launched is a run started by launchRun, maybe not listening yet.
type launched struct {
	logs *logSink
	done chan error
	stop func() error
}

// launchRun starts run in-process with args and environment env, without
// waiting: nodes of a cluster must start together. The server is stopped at
// the end of the test if the test has not stopped it.
func launchRun(t *testing.T, args []string, env map[string]string) *launched {
	t.Helper()
	// The embedded NATS server keeps its files in the test's own directory
	// unless the test names one (a later -data-dir wins).
	args = append([]string{"-data-dir", t.TempDir()}, args...)
	l := &launched{logs: newLogSink(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		l.done <- run(ctx, args, func(k string) string { return env[k] }, l.logs)
	}()
	var once sync.Once
	var runErr error
	l.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-l.done:
			case <-time.After(testTimeout):
				t.Errorf("run did not return %v after its context was cancelled", testTimeout)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := l.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return l
}

// await waits until the run listens, at most timeout.
func (l *launched) await(t *testing.T, timeout time.Duration) *server {
	t.Helper()
	select {
	case addr := <-l.logs.listening:
		return &server{addr: addr, logs: l.logs, stop: l.stop}
	case err := <-l.done:
		t.Fatalf("run returned before listening: %v\n%s", err, l.logs)
	case <-time.After(timeout):
		t.Fatalf("run did not listen within %v\n%s", timeout, l.logs)
	}
	return nil
}
