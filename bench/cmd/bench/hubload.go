package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/duplexws/duplex/bench/internal/harness"
	"github.com/duplexws/duplex/bench/internal/hubload"
	"github.com/duplexws/duplex/bench/internal/report"
)

// runHubLoad is "bench hubload CONFIG-JSON": the hub-nats scenario's load,
// run by the harness in its own process pinned to the load core; it reports
// on stdout ("EVENT kind phase" lines, then "RESULT {json}").
func runHubLoad(args []string) {
	if len(args) != 1 {
		fatal(fmt.Errorf("usage: bench hubload CONFIG-JSON"))
	}
	var cfg hubload.Config
	if err := json.Unmarshal([]byte(args[0]), &cfg); err != nil {
		fatal(fmt.Errorf("hubload: %v", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := bufio.NewWriter(os.Stdout)
	res, err := hubload.Run(ctx, cfg, func(e hubload.Event) {
		fmt.Fprintf(out, "EVENT %s %s\n", e.Kind, e.Phase)
		out.Flush()
	})
	if err != nil {
		fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Fprintf(out, "RESULT %s\n", b)
	out.Flush()
}

// runHubNATS runs the hub-nats scenario alone (harness.RunHubNATS).
func runHubNATS(o harness.Options) {
	if len(o.Scenarios) > 1 {
		fatal(fmt.Errorf("-scenarios %s runs alone", report.HubNATS))
	}
	start := time.Now()
	res, err := harness.RunHubNATS(o)
	if err != nil {
		fatal(err)
	}
	failed := 0
	for _, r := range res.Runs {
		if r.Err != "" {
			failed++
		}
	}
	fmt.Fprintf(os.Stderr, "%d runs in %s, %d failed; report: %s\n", len(res.Runs), time.Since(start).Round(time.Second),
		failed, filepath.Join(o.Out, report.HubNATS+".md"))
}
