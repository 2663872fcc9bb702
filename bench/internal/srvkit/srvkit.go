// Package srvkit is the thin shell shared by the benchmark servers in
// bench/servers: flags, the "LISTEN addr" handshake with the harness, a clean
// stop on SIGTERM or when stdin closes, an optional CPU profile, and the
// broadcast room every server uses to hold its subscribers.
//
// Each server keeps its library-specific code (upgrade, read loop, write,
// broadcast) in its own main package, written the way that library's README
// recommends; srvkit only removes the boilerplate around it.
package srvkit

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Modes of a benchmark server.
const (
	ModeEcho      = "echo"      // every message is written back to its sender
	ModeBroadcast = "broadcast" // every message is written to every connection (one room)
)

// Config is what the harness asks of a server.
type Config struct {
	Addr      string // listen address, "127.0.0.1:0" picks a free port
	Mode      string // ModeEcho or ModeBroadcast
	Compress  bool   // negotiate permessage-deflate when the client offers it
	ReadLimit int64  // largest message accepted
	Variant   string // a server-specific alternative way of serving, for experiments
}

// Server is a started server: its bound address and how to stop it.
type Server struct {
	Addr string
	Stop func()
}

// StartFunc starts a server for cfg and returns once it is listening.
type StartFunc func(cfg Config) (*Server, error)

// Features says what a server supports; the harness asks with -features.
type Features struct {
	Compression bool
	// Variants are the -variant values the server serves; a server that
	// lists none takes any (and ignores it). Listing them makes a variant
	// the harness asks for and the server lacks an error, not a run of the
	// server's default measured under the variant's name.
	Variants []string
}

// Main runs a server binary: it parses the flags, starts the server, prints
// "LISTEN <addr>" on stdout and serves until SIGTERM/SIGINT or until stdin
// reaches EOF (the harness closes it), then stops it. With -profile-window
// the CPU profile covers only the time between the lines "profile start"
// and "profile stop" on stdin (the harness sends them at the measured
// window's ends).
func Main(start StartFunc, feat Features) {
	cfg := Config{}
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "listen address")
	flag.StringVar(&cfg.Mode, "mode", ModeEcho, "echo or broadcast")
	flag.BoolVar(&cfg.Compress, "compress", false, "negotiate permessage-deflate")
	flag.Int64Var(&cfg.ReadLimit, "read-limit", 1<<20, "largest message accepted, in bytes")
	flag.StringVar(&cfg.Variant, "variant", "", "server-specific variant, for experiments (duplex: accept, nocontext, prepared)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	window := flag.Bool("profile-window", false, "with -cpuprofile, profile only from the stdin line \"profile start\" to \"profile stop\"")
	memprofile := flag.String("memprofile", "", "write a heap profile to this file when stopped")
	features := flag.Bool("features", false, "print the supported features and exit")
	flag.Parse()

	if *features {
		fmt.Printf("compression=%v\n", feat.Compression)
		if feat.Variants != nil {
			fmt.Printf("variants=%s\n", strings.Join(feat.Variants, ","))
		}
		return
	}
	if cfg.Variant != "" && feat.Variants != nil && !slices.Contains(feat.Variants, cfg.Variant) {
		fmt.Fprintf(os.Stderr, "no variant %q here (%s)\n", cfg.Variant, strings.Join(feat.Variants, ", "))
		os.Exit(2)
	}
	if cfg.Compress && !feat.Compression {
		fmt.Fprintln(os.Stderr, "compression not supported")
		os.Exit(3)
	}
	if cfg.Mode != ModeEcho && cfg.Mode != ModeBroadcast {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", cfg.Mode)
		os.Exit(2)
	}
	RaiseFileLimit()

	var profiling sync.Mutex // serialises starting and stopping the profile
	profileOn := false
	startProfile, stopProfile := func() {}, func() {}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		startProfile = func() {
			profiling.Lock()
			defer profiling.Unlock()
			if profileOn {
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			profileOn = true
		}
		stopProfile = func() {
			profiling.Lock()
			defer profiling.Unlock()
			if profileOn {
				pprof.StopCPUProfile()
				profileOn = false
			}
		}
		if !*window {
			startProfile()
		}
		defer func() {
			stopProfile()
			f.Close()
		}()
	}

	srv, err := start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
	fmt.Printf("LISTEN %s\n", srv.Addr)

	done := make(chan struct{}, 2)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; done <- struct{}{} }()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "profile start":
				startProfile()
			case "profile stop":
				stopProfile()
			case "gc":
				// The collection the runtime itself runs after two idle
				// minutes (forcegcperiod), run now: the idle scenario's
				// steady figure, the same for every library.
				runtime.GC()
			}
		}
		_, _ = io.Copy(io.Discard, os.Stdin) // a line too long for the scanner
		done <- struct{}{}
	}()
	<-done
	if *memprofile != "" {
		writeHeapProfile(*memprofile)
	}
	srv.Stop()
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit.
func RaiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

func writeHeapProfile(file string) {
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "goroutines %d, heap live %d KiB in spans of %d KiB, %d KiB free and %d KiB of it released, stacks in use %d KiB, sys %d KiB\n",
		runtime.NumGoroutine(), ms.HeapAlloc>>10, ms.HeapInuse>>10, ms.HeapIdle>>10, ms.HeapReleased>>10, ms.StackInuse>>10, ms.Sys>>10)
}
