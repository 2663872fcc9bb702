package report

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// micro renders the microbenchmarks: one table per benchmark, one row per
// case, one column per library.
func (a *agg) micro(b *strings.Builder) {
	res := a.res
	if len(res.Micro) == 0 && res.MicroErr == "" {
		return
	}
	fmt.Fprintf(b, "## 5. Microbenchmarks of the hot paths\n\n")
	fmt.Fprintf(b, "`go test -bench . -benchmem` pinned to CPU %s: Duplex's own in ../websocket (bench_test.go), the peers' in bench/micro where they export an equivalent (gobwas/ws: ws.Cipher, WriteHeader, ReadHeader; gorilla, coder, gws: a server Conn over an in-memory connection). Cells: ns/op · B/op · allocs/op. ", res.Settings.ServerCPU)
	fmt.Fprintf(b, "ReadMessage reads masked text frames: Duplex validates UTF-8 there as RFC 6455 requires, the peers by default do not. The peers' WriteMessage writes into a connection that discards (gobwas writes header and payload without copying); Duplex's writes into an in-memory transport. RoundTrip is Duplex alone, over TCP loopback.\n\n")
	if res.MicroErr != "" {
		fmt.Fprintf(b, "Some microbenchmarks failed: %s\n\n", res.MicroErr)
	}
	var benches []string
	seen := map[string]bool{}
	for _, m := range res.Micro {
		if !seen[m.Bench] {
			seen[m.Bench] = true
			benches = append(benches, m.Bench)
		}
	}
	order := map[string]int{"Mask": 0, "FrameHeader": 1, "ReadMessage": 2, "WriteMessage": 3, "RoundTrip": 4}
	sort.SliceStable(benches, func(i, j int) bool {
		oi, ok := order[benches[i]]
		if !ok {
			oi = 99
		}
		oj, ok := order[benches[j]]
		if !ok {
			oj = 99
		}
		return oi < oj
	})
	for _, bench := range benches {
		var libs, cases []string
		cell := map[[2]string]Micro{}
		ls, cs := map[string]bool{}, map[string]bool{}
		for _, m := range res.Micro {
			if m.Bench != bench {
				continue
			}
			if !ls[m.Lib] {
				ls[m.Lib] = true
				libs = append(libs, m.Lib)
			}
			if !cs[m.Case] {
				cs[m.Case] = true
				cases = append(cases, m.Case)
			}
			cell[[2]string{m.Case, m.Lib}] = m
		}
		sort.SliceStable(libs, func(i, j int) bool { return libs[i] == Ours && libs[j] != Ours })
		sort.SliceStable(cases, func(i, j int) bool {
			x, ex := strconv.Atoi(cases[i])
			y, ey := strconv.Atoi(cases[j])
			if ex == nil && ey == nil {
				return x < y
			}
			return cases[i] < cases[j]
		})
		t := grid(bench, cases, func(c string) string { return c }, libs, func(l string) string { return l }, func(c, l string) string {
			m, ok := cell[[2]string{c, l}]
			if !ok {
				return "–"
			}
			return fmt.Sprintf("%s · %.0f · %.0f", nsop(m.NsOp), m.BytesOp, m.AllocsOp)
		})
		fmt.Fprintf(b, "%s\n", t)
	}
}
