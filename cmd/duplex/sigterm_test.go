//go:build unix

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERM builds the binary, serves a WebSocket, and sends SIGTERM: the
// client must get close 1001 and the process must exit with status 0.
func TestSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	bin := filepath.Join(t.TempDir(), "duplex")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	logs := newLogSink()
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "DUPLEX_LOG_LEVEL=info")
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false
	defer func() {
		// Whatever happened, leave no process behind.
		if !reaped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	addr := logs.waitListening(t)

	wctx, wcancel := context.WithTimeout(ctx, testTimeout)
	defer wcancel()
	c := dialChat(t, wctx, addr)
	echo(t, wctx, c, "before SIGTERM")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wantGoingAway(t, wctx, c)

	select {
	case err := <-exited:
		reaped = true
		if err != nil {
			t.Errorf("duplex exited with %v after SIGTERM, want status 0\n%s", err, logs)
		}
	case <-wctx.Done():
		t.Fatalf("duplex did not exit after SIGTERM\n%s", logs)
	}
	if len(logs.linesWith("websocket closed", "code=1001")) != 1 {
		t.Errorf("no 'websocket closed ... code=1001' line:\n%s", logs)
	}
}
