package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/duplexws/duplex/bench/internal/loadgen"
)

// runLoadgen is "bench loadgen": one load run in this process, steered by the
// harness through stdin ("grow N", "stop") and reporting on stdout
// ("EVENT kind n" lines, then "RESULT {json}").
func runLoadgen(args []string) {
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	var c loadgen.Config
	fs.StringVar(&c.Addr, "addr", "", "server address")
	fs.StringVar(&c.Proto, "proto", "ws", "ws or tcp")
	fs.StringVar(&c.Mode, "mode", loadgen.ModeEcho, "echo, idle or broadcast")
	fs.IntVar(&c.Conns, "conns", 100, "connections")
	fs.IntVar(&c.Payload, "payload", 64, "payload bytes")
	fs.IntVar(&c.Depth, "depth", 1, "echo: messages in flight per connection")
	fs.IntVar(&c.Window, "window", 4, "broadcast: messages in flight")
	fs.BoolVar(&c.Compress, "compress", false, "permessage-deflate")
	fs.DurationVar(&c.Warmup, "warmup", 0, "warm-up")
	fs.DurationVar(&c.Duration, "duration", 0, "measured time")
	fs.IntVar(&c.PerIP, "per-ip", 1000, "connections per source address")
	fs.BoolVar(&c.Verify, "verify", false, "check each connection's first echo")
	fs.IntVar(&c.Chat, "chat", 0, "idle: messages each connection sends once open")
	fs.BoolVar(&c.JSON, "json", false, "broadcast: JSON text messages carrying their send time")
	fs.StringVar(&c.HubRoom, "hub-room", "", "broadcast through a hub: subscribers connect and subscribe to this room first")
	fs.StringVar(&c.PubPath, "pub-path", "", "with -hub-room: the publisher's path (default /pub)")
	_ = fs.Parse(args)

	ctl := make(chan loadgen.Command, 1)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "grow" {
				n, _ := strconv.Atoi(f[1])
				ctl <- loadgen.Command{N: n}
				continue
			}
			break
		}
		ctl <- loadgen.Command{N: -1}
	}()
	out := bufio.NewWriter(os.Stdout)
	res, err := loadgen.Run(c, ctl, func(e loadgen.Event) {
		fmt.Fprintf(out, "EVENT %s %d\n", e.Kind, e.N)
		out.Flush()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res)
	fmt.Fprintf(out, "RESULT %s\n", b)
	out.Flush()
}
