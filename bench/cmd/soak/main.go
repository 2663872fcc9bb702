// Command soak runs the soak benchmark (package internal/soak): the real
// duplex server holding 10k connections with keepalive and a trickle of
// messages for minutes, its RSS, goroutines and GC pauses sampled over time.
//
//	cd bench && go run ./cmd/soak                 # 10k connections, 5 minutes held -> results/followup/soak.*
//	cd bench && go run ./cmd/soak -conns 200 -hold 20s -after 5s -out /tmp/soak   # a quick look
//
// "soak load" is the load process the command starts for itself.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/duplexws/duplex/bench/internal/soak"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "load" {
		runLoad(os.Args[2:])
		return
	}
	cfg := soak.Config{LogTo: os.Stderr}
	flag.IntVar(&cfg.Load.Conns, "conns", 10000, "connections held")
	flag.IntVar(&cfg.Load.Rate, "rate", 500, "connections opened per second")
	flag.DurationVar(&cfg.Load.MinInterval, "min-interval", 10*time.Second, "shortest pause between two messages of a connection")
	flag.DurationVar(&cfg.Load.MaxInterval, "max-interval", 30*time.Second, "longest pause between two messages of a connection")
	flag.DurationVar(&cfg.Hold, "hold", 5*time.Minute, "how long all connections are held once open")
	flag.DurationVar(&cfg.After, "after", 30*time.Second, "how long the server is watched after the connections close")
	flag.DurationVar(&cfg.Sample, "sample", 5*time.Second, "sampling interval")
	flag.IntVar(&cfg.MaxConns, "max-connections", 15000, "the server's -max-connections (under its open-file limit)")
	flag.StringVar(&cfg.Out, "out", "results/followup", "output directory")
	flag.StringVar(&cfg.Name, "name", "soak", "base name of the outputs (.json, .md, .png)")
	flag.Parse()
	cfg.Command = strings.TrimSpace("go run ./cmd/soak " + strings.Join(os.Args[1:], " "))

	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		fatal(fmt.Errorf("run soak from the bench module (cd bench): %v", err))
	}
	cfg.ModDir = strings.TrimSpace(string(out))
	if !filepath.IsAbs(cfg.Out) {
		cfg.Out = filepath.Join(cfg.ModDir, cfg.Out)
	}
	if cfg.Self, err = os.Executable(); err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := soak.Run(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "soak: done; %s\n", filepath.Join(cfg.Out, cfg.Name+".md"))
	b, _ := json.MarshalIndent(res.Summary, "", "  ")
	fmt.Printf("%s\n", b)
}

// runLoad is "soak load": the load process. It prints "STAT {json}" lines,
// and "DONE {json}" once stdin is closed and every connection has closed.
func runLoad(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var c soak.LoadConfig
	fs.StringVar(&c.URL, "url", "", "the echo endpoint")
	fs.IntVar(&c.Conns, "conns", 100, "connections")
	fs.IntVar(&c.Rate, "rate", 500, "connections opened per second")
	fs.DurationVar(&c.MinInterval, "min", 10*time.Second, "shortest pause between messages")
	fs.DurationVar(&c.MaxInterval, "max", 30*time.Second, "longest pause between messages")
	every := fs.Duration("every", 5*time.Second, "interval of the STAT lines")
	_ = fs.Parse(args)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	w := bufio.NewWriter(os.Stdout)
	emit := func(kind string, st soak.LoadStats) {
		b, _ := json.Marshal(st)
		fmt.Fprintf(w, "%s %s\n", kind, b)
		w.Flush()
	}
	final := soak.RunLoad(ctx, c, *every, func(st soak.LoadStats) { emit("STAT", st) })
	emit("DONE", final)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}
