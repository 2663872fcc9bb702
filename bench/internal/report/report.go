package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Floor is the name of the plain TCP echo.
const Floor = "tcp"

// Ours is the name of the library this harness exists for.
const Ours = "duplex"

// Size formats a payload size: 64 B, 1 KiB, 16 KiB.
func Size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// stat is the median, min and max of one metric over the rounds.
type stat struct {
	med, min, max float64
	n             int
	na            bool
	err           string
}

func (s stat) ok() bool { return s.n > 0 }

// cellKey: for broadcast, the window is folded into payload (payload*1000+window)
// so that every scenario has the same two numbers per cell.
type cellKey struct {
	scenario       string
	conns, payload int
	lib            string
}

func payloadKey(r Record) int {
	if r.Scenario == Broadcast || r.Scenario == HubBroadcast {
		return r.Payload*1000 + r.Window
	}
	return r.Payload
}

// agg groups the records by cell and library.
type agg struct {
	res  *Results
	recs map[cellKey][]Record
	libs []string
}

func newAgg(res *Results) *agg {
	a := &agg{res: res, recs: map[cellKey][]Record{}}
	for _, l := range res.Libs {
		if l.Name != Hub { // only in its own section
			a.libs = append(a.libs, l.Name)
		}
	}
	for _, r := range res.Records {
		k := cellKey{r.Scenario, r.Conns, payloadKey(r), r.Lib}
		a.recs[k] = append(a.recs[k], r)
	}
	return a
}

func (a *agg) stat(scenario string, conns, payload int, lib string, f func(Record) float64) stat {
	var vals []float64
	var s stat
	for _, r := range a.recs[cellKey{scenario, conns, payload, lib}] {
		switch {
		case r.NA:
			s.na = true
		case r.Err != "" && f(r) == 0:
			s.err = r.Err
		default:
			vals = append(vals, f(r))
		}
	}
	if len(vals) == 0 {
		return s
	}
	sort.Float64s(vals)
	s.n = len(vals)
	s.min, s.max = vals[0], vals[len(vals)-1]
	if len(vals)%2 == 1 {
		s.med = vals[len(vals)/2]
	} else {
		s.med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
	}
	return s
}

// cells lists the (conns, payload) pairs of a scenario, sorted.
func (a *agg) cells(scenario string) [][2]int {
	seen := map[[2]int]bool{}
	var out [][2]int
	for k := range a.recs {
		if k.scenario == scenario && !seen[[2]int{k.conns, k.payload}] {
			seen[[2]int{k.conns, k.payload}] = true
			out = append(out, [2]int{k.conns, k.payload})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i][0] != out[j][0] {
			return out[i][0] < out[j][0]
		}
		return out[i][1] < out[j][1]
	})
	return out
}

// best is the best median among the WebSocket libraries (the floor excluded),
// and, if except is not "", among them without except.
func (a *agg) best(scenario string, conns, payload int, f func(Record) float64, higher bool, except string) (string, float64) {
	bestLib, bestV := "", math.NaN()
	for _, l := range a.libs {
		if l == Floor || l == except {
			continue
		}
		s := a.stat(scenario, conns, payload, l, f)
		if !s.ok() {
			continue
		}
		if math.IsNaN(bestV) || higher && s.med > bestV || !higher && s.med < bestV {
			bestLib, bestV = l, s.med
		}
	}
	return bestLib, bestV
}

// Metrics.
var (
	msgsPerSec = func(r Record) float64 { return r.MsgsPerSec }
	cpuPerMsg  = func(r Record) float64 { return r.CPUPerMsg }
	p50        = func(r Record) float64 { return r.P50 }
	p99        = func(r Record) float64 { return r.P99 }
	p999       = func(r Record) float64 { return r.P999 }
	perConn    = func(r Record) float64 { return r.BytesPerConn }
	deliveries = func(r Record) float64 { return r.DeliveriesPerSec }
	loadBusy   = func(r Record) float64 { return r.LoadBusy }
	reads      = func(r Record) float64 { return r.ReadsPerMsg }
	writes     = func(r Record) float64 { return r.WritesPerMsg }
	serverBusy = func(r Record) float64 { return r.ServerBusy }
)

// Write writes results.json, REPORT.md and the plots into dir.
func Write(res *Results, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	a := newAgg(res)
	plots, err := a.plots(dir)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "REPORT.md"), []byte(a.markdown(plots)), 0o644)
}

// num formats a rate or count compactly: 812, 12.3k, 1.25M.
func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func us(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f ms", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f ms", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.1f µs", v)
}

func kib(v float64) string { return fmt.Sprintf("%.2f KiB", v/1024) }

// cell renders "median (min–max)" or why there is no value.
func cell(s stat, format func(float64) string, spread bool) string {
	switch {
	case s.ok() && spread && s.n > 1:
		return fmt.Sprintf("%s (%s–%s)", format(s.med), format(s.min), format(s.max))
	case s.ok():
		return format(s.med)
	case s.na:
		return "n/a"
	case s.err != "":
		return "failed"
	}
	return "–"
}

func ratio(v, ref float64) string {
	if math.IsNaN(ref) || ref == 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}

type table struct {
	head []string
	rows [][]string
}

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(t.head)) + "\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// libsOf is the libraries shown for a scenario: the floor does not compress.
func (a *agg) libsOf(scenario string) []string {
	if scenario != Deflate {
		return a.libs
	}
	var out []string
	for _, l := range a.libs {
		if l != Floor {
			out = append(out, l)
		}
	}
	return out
}

func (a *agg) libHead(first ...string) []string {
	return a.libHeadOf("", first...)
}

func (a *agg) libHeadOf(scenario string, first ...string) []string {
	h := append([]string{}, first...)
	for _, l := range a.libsOf(scenario) {
		if l == Floor {
			h = append(h, "tcp floor")
		} else {
			h = append(h, l)
		}
	}
	return h
}

// valueTable: rows are the scenario's cells, one column per library.
func (a *agg) valueTable(scenario string, conns int, f func(Record) float64, format func(float64) string) *table {
	t := &table{head: a.libHeadOf(scenario, "payload")}
	for _, c := range a.cells(scenario) {
		if c[0] != conns {
			continue
		}
		row := []string{Size(c[1])}
		for _, l := range a.libsOf(scenario) {
			row = append(row, cell(a.stat(scenario, c[0], c[1], l, f), format, true))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// ratioTable: each library's median against the best library's median and
// against the floor's. For lower-is-better metrics a ratio above 1 is worse.
func (a *agg) ratioTable(scenario string, conns int, f func(Record) float64, higher bool) *table {
	t := &table{head: a.libHeadOf(scenario, "payload")}
	for _, c := range a.cells(scenario) {
		if c[0] != conns {
			continue
		}
		_, best := a.best(scenario, c[0], c[1], f, higher, "")
		floor := a.stat(scenario, c[0], c[1], Floor, f)
		row := []string{Size(c[1])}
		for _, l := range a.libsOf(scenario) {
			s := a.stat(scenario, c[0], c[1], l, f)
			switch {
			case !s.ok():
				row = append(row, cell(s, num, false))
			case l == Floor:
				row = append(row, "1×")
			default:
				fl := math.NaN()
				if floor.ok() {
					fl = floor.med
				}
				r := ratio(s.med, best)
				if scenario != Deflate {
					r += " · " + ratio(s.med, fl)
				}
				row = append(row, r)
			}
		}
		t.rows = append(t.rows, row)
	}
	return t
}

func (a *agg) latencyTable(scenario string, conns int) *table {
	t := &table{head: a.libHead("payload")}
	for _, c := range a.cells(scenario) {
		if c[0] != conns {
			continue
		}
		row := []string{Size(c[1])}
		for _, l := range a.libs {
			s50 := a.stat(scenario, c[0], c[1], l, p50)
			if !s50.ok() {
				row = append(row, cell(s50, num, false))
				continue
			}
			s99 := a.stat(scenario, c[0], c[1], l, p99)
			s999 := a.stat(scenario, c[0], c[1], l, p999)
			row = append(row, fmt.Sprintf("%s / %s / %s", us(s50.med), us(s99.med), us(s999.med)))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

func (a *agg) syscallTable(scenario string, conns int) *table {
	t := &table{head: a.libHead("payload")}
	for _, c := range a.cells(scenario) {
		if c[0] != conns {
			continue
		}
		row := []string{Size(c[1])}
		for _, l := range a.libs {
			sr := a.stat(scenario, c[0], c[1], l, reads)
			if !sr.ok() {
				row = append(row, cell(sr, num, false))
				continue
			}
			row = append(row, fmt.Sprintf("%.2f / %.2f", sr.med, a.stat(scenario, c[0], c[1], l, writes).med))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

func (a *agg) busyTable(scenario string, conns int) *table {
	t := &table{head: a.libHead("payload")}
	for _, c := range a.cells(scenario) {
		if c[0] != conns {
			continue
		}
		row := []string{Size(c[1])}
		for _, l := range a.libs {
			sb := a.stat(scenario, c[0], c[1], l, serverBusy)
			if !sb.ok() {
				row = append(row, cell(sb, num, false))
				continue
			}
			row = append(row, fmt.Sprintf("%.0f%% / %.0f%%", 100*sb.med, 100*a.stat(scenario, c[0], c[1], l, loadBusy).med))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

func (a *agg) conns(scenario string) []int {
	var out []int
	for _, c := range a.cells(scenario) {
		if len(out) == 0 || out[len(out)-1] != c[0] {
			out = append(out, c[0])
		}
	}
	return out
}

func (a *agg) maxOf(scenario string, f func(Record) float64) float64 {
	m := 0.0
	for _, r := range a.res.Records {
		if r.Scenario == scenario {
			m = math.Max(m, f(r))
		}
	}
	return m
}

func (a *agg) errors() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range a.res.Records {
		if r.Err == "" {
			continue
		}
		e := r.Err
		if len(e) > 300 {
			e = e[:300] + "…"
		}
		s := fmt.Sprintf("%s %s (c=%d, %s, round %d): %s", r.Scenario, r.Lib, r.Conns, Size(r.Payload), r.Round, e)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (a *agg) markdown(plots map[string]string) string {
	res := a.res
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	s := res.Settings
	w("# Duplex benchmark report\n\n")
	kind := "full"
	if s.Short {
		kind = "short"
	}
	w("A %s run of `%s`, %s, %s long.\n\n", kind, s.Command, res.Started.UTC().Format("2006-01-02 15:04 MST"),
		res.Finished.Sub(res.Started).Round(time.Second))
	w("**Machine:** %d cores, %s, %s RAM, Linux %s, %s, open-file limit %d per process. Load average %s at the start, %s at the end (the machine is shared).\n\n",
		m.Cores, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.FDLimit, m.LoadStart, m.LoadEnd)
	w("**Method:** each server runs alone pinned to CPU %s with GOMAXPROCS=1; the load generator (one goroutine on a raw epoll set, frames built once, masked) runs pinned to CPU %s with GOMAXPROCS=1. ", s.ServerCPU, s.LoadCPU)
	w("Every cell is a fresh server process; %d round(s), the libraries' order rotated each round; each echo or broadcast run has a %v warm-up and a %v measured window. ", s.Rounds, s.Warmup, s.Duration)
	w("Figures are medians over the rounds with (min–max). Server CPU time comes from /proc/<pid>/stat (utime+stime) over the measured window. ")
	var wins []string
	for _, x := range s.Windows {
		wins = append(wins, fmt.Sprint(x))
	}
	w("Echo keeps %d message(s) in flight per connection; broadcast keeps %s message(s) in flight (one table each).\n\n", s.Depth, strings.Join(wins, " or "))

	t := &table{head: []string{"library", "module", "version", "permessage-deflate"}}
	for _, l := range res.Libs {
		c := "yes"
		if !l.Compression {
			c = "n/a"
		}
		v := l.Version
		if !l.Built {
			v += " (build failed)"
		}
		t.rows = append(t.rows, []string{l.Name, l.Module, v, c})
	}
	w("%s\n", t)
	w("Ratios read `A× · B×`: A against the best WebSocket library in that cell, B against the TCP floor. For msgs/s higher is better; for CPU, latency and memory lower is better (a ratio above 1 is worse).\n\n")

	a.summary(&b)

	if cs := a.conns(Echo); len(cs) > 0 {
		w("## 1. Echo: throughput, latency, server CPU per message\n\n")
		for _, c := range cs {
			w("### %d connections\n\n", c)
			w("Messages echoed per second:\n\n%s\n", a.valueTable(Echo, c, msgsPerSec, num))
			w("Ratios of msgs/s:\n\n%s\n", a.ratioTable(Echo, c, msgsPerSec, true))
			w("Server CPU time per message (µs):\n\n%s\n", a.valueTable(Echo, c, cpuPerMsg, func(v float64) string { return fmt.Sprintf("%.2f", v) }))
			w("Ratios of CPU per message:\n\n%s\n", a.ratioTable(Echo, c, cpuPerMsg, false))
			w("Round-trip latency p50 / p99 / p99.9:\n\n%s\n", a.latencyTable(Echo, c))
			w("Server system calls per message, reads / writes (from /proc/<pid>/io; epoll_wait not counted):\n\n%s\n", a.syscallTable(Echo, c))
			w("How busy each side's core was, server / load generator (CPU seconds per second; a server well under 100%% was waiting, not working):\n\n%s\n", a.busyTable(Echo, c))
			for _, k := range []string{fmt.Sprintf("echo-c%d", c), fmt.Sprintf("cpu-c%d", c)} {
				if p, ok := plots[k]; ok {
					w("![%s](%s)\n\n", k, p)
				}
			}
		}
		w("The load generator used up to %.0f%% of its core and the servers up to %.0f%% of theirs: where the generator is near 100%% it, not the server, set the pace, and CPU per message is the fairer comparison.\n\n",
			100*a.maxOf(Echo, loadBusy), 100*a.maxOf(Echo, serverBusy))
	}

	if cs := a.cells(Idle); len(cs) > 0 {
		w("## 2. Memory per idle connection\n\n")
		w("RSS growth of the server divided by the connections, after the RSS settled (no message sent). Connections come from %d source addresses 127.0.0.x.\n\n", (cs[len(cs)-1][0]+999)/1000)
		t := &table{head: a.libHead("connections")}
		r := &table{head: a.libHead("connections")}
		for _, c := range cs {
			row := []string{fmt.Sprint(c[0])}
			rrow := []string{fmt.Sprint(c[0])}
			_, best := a.best(Idle, c[0], c[1], perConn, false, "")
			floor := a.stat(Idle, c[0], c[1], Floor, perConn)
			for _, l := range a.libs {
				st := a.stat(Idle, c[0], c[1], l, perConn)
				row = append(row, cell(st, kib, true))
				switch {
				case !st.ok():
					rrow = append(rrow, cell(st, kib, false))
				case l == Floor:
					rrow = append(rrow, "1×")
				default:
					fl := math.NaN()
					if floor.ok() {
						fl = floor.med
					}
					rrow = append(rrow, ratio(st.med, best)+" · "+ratio(st.med, fl))
				}
			}
			t.rows = append(t.rows, row)
			r.rows = append(r.rows, rrow)
		}
		w("%s\nRatios:\n\n%s\n", t, r)
		if last := cs[len(cs)-1]; len(cs) > 1 {
			prev := cs[len(cs)-2]
			w("Projected to 100,000 connections at the per-connection cost measured at %d:", last[0])
			var moves []string
			for _, l := range a.libs {
				st := a.stat(Idle, last[0], last[1], l, perConn)
				if !st.ok() {
					continue
				}
				w(" %s %.0f MiB;", l, st.med*100000/(1<<20))
				if p := a.stat(Idle, prev[0], prev[1], l, perConn); p.ok() && p.med > 0 {
					moves = append(moves, fmt.Sprintf("%s %+.0f%%", l, 100*(st.med/p.med-1)))
				}
			}
			w(" a real 100k run does not fit under this machine's open-file limit. From %d to %d connections the cost per connection moved by: %s; a curve that is flat or falling there carries to 100k+, as the fixed costs spread further.\n\n",
				prev[0], last[0], strings.Join(moves, ", "))
		}
		if p, ok := plots["idle"]; ok {
			w("![idle memory](%s)\n\n", p)
		}
		a.idleVariant(&b)
	}

	if cs := a.cells(Broadcast); len(cs) > 0 {
		w("## 3. Broadcast fan-out to one room\n\n")
		w("Every connection is a subscriber of the one room (the publisher too). The publisher keeps W messages in flight; a message retires when every subscriber has it; lag is publish to delivery. Libraries with a broadcast helper use it (gws Broadcaster, gorilla PreparedMessage, gobwas a compiled frame); the others write per subscriber: nbio directly (its writes never block), duplex, coder, gorilla and gobwas through a channel per subscriber drained by a writer goroutine. Duplex's writer sends whatever is queued and flushes once, so with W > 1 it writes several messages per system call; the others write each message on its own.\n\n")
		for _, c := range cs {
			w("### %d subscribers, %s messages, W = %d\n\n", c[0], Size(c[1]/1000), c[1]%1000)
			t := &table{head: []string{"library", "deliveries/s", "ratio · floor", "lag p50", "lag p99", "lag p99.9", "server CPU µs/delivery", "write syscalls/delivery", "lost"}}
			_, best := a.best(Broadcast, c[0], c[1], deliveries, true, "")
			floor := a.stat(Broadcast, c[0], c[1], Floor, deliveries)
			for _, l := range a.libs {
				st := a.stat(Broadcast, c[0], c[1], l, deliveries)
				if !st.ok() {
					t.rows = append(t.rows, []string{l, cell(st, num, false), "", "", "", "", "", "", ""})
					continue
				}
				fl := math.NaN()
				if floor.ok() {
					fl = floor.med
				}
				rr := ratio(st.med, best) + " · " + ratio(st.med, fl)
				if l == Floor {
					rr = "1×"
				}
				var lost int64
				for _, r := range a.recs[cellKey{Broadcast, c[0], c[1], l}] {
					lost += r.Lost
				}
				t.rows = append(t.rows, []string{l, cell(st, num, true), rr,
					us(a.stat(Broadcast, c[0], c[1], l, p50).med), us(a.stat(Broadcast, c[0], c[1], l, p99).med),
					us(a.stat(Broadcast, c[0], c[1], l, p999).med),
					fmt.Sprintf("%.2f", a.stat(Broadcast, c[0], c[1], l, cpuPerMsg).med),
					fmt.Sprintf("%.2f", a.stat(Broadcast, c[0], c[1], l, writes).med), fmt.Sprint(lost)})
			}
			w("%s\n", t)
		}
		for _, c := range cs {
			if p, ok := plots[fmt.Sprintf("broadcast-w%d", c[1]%1000)]; ok {
				w("![broadcast W=%d](%s)\n\n", c[1]%1000, p)
			}
		}
	}

	a.hubBroadcast(&b, plots)

	if cs := a.conns(Deflate); len(cs) > 0 {
		w("## 4. Echo with permessage-deflate\n\n")
		w("The client sends 64 different chat-like JSON messages in turn (the same one every time would let a server that keeps context reply with a back-reference), as binary messages, each deflated on its own (it offers client_no_context_takeover); every server compresses its replies with its own defaults (duplex: CompressionOptions{Binary: true}, as it compresses only text by default; gobwas: wsflate at BestSpeed, no context takeover). n/a: the library does not support compression.\n\n")
		for _, c := range cs {
			w("### %d connections\n\nMessages echoed per second:\n\n%s\n", c, a.valueTable(Deflate, c, msgsPerSec, num))
			w("Ratios of msgs/s against the best library:\n\n%s\n", a.ratioTable(Deflate, c, msgsPerSec, true))
			w("Server CPU time per message (µs):\n\n%s\n", a.valueTable(Deflate, c, cpuPerMsg, func(v float64) string { return fmt.Sprintf("%.2f", v) }))
			w("Reply size on the wire, payload bytes per message (what the server's compression achieved):\n\n%s\n",
				a.valueTable(Deflate, c, func(r Record) float64 { return r.ReplyBytes }, func(v float64) string { return fmt.Sprintf("%.0f", v) }))
		}
		w("Defaults differ: duplex and coder keep the compression context between messages (duplex with an 8 KiB window, its compressor pooled and its history restored per message), gorilla, gobwas, gws (by default) and nbio compress each message on its own (no context takeover). Keeping context makes replies smaller and costs CPU.\n\n")
		if p, ok := plots["deflate"]; ok {
			w("![deflate](%s)\n\n", p)
		}
	}

	a.micro(&b)

	if errs := a.errors(); len(errs) > 0 {
		w("## Failed runs\n\n")
		for _, e := range errs {
			w("- %s\n", e)
		}
		w("\n")
	}
	return b.String()
}

// summary is Duplex against the best other library and the floor, cell by cell.
func (a *agg) summary(b *strings.Builder) {
	has := false
	for _, l := range a.libs {
		has = has || l == Ours
	}
	if !has {
		return
	}
	t := &table{head: []string{"scenario", "metric", "duplex", "best peer", "duplex / best peer", "duplex / tcp floor"}}
	var behind, ahead []string
	add := func(scenario string, c [2]int, name string, f func(Record) float64, higher bool, format func(float64) string) {
		d := a.stat(scenario, c[0], c[1], Ours, f)
		peer, pv := a.best(scenario, c[0], c[1], f, higher, Ours)
		floor := a.stat(scenario, c[0], c[1], Floor, f)
		label := fmt.Sprintf("%s c=%d %s", scenario, c[0], Size(c[1]))
		switch scenario {
		case Idle:
			label = fmt.Sprintf("idle c=%d", c[0])
		case Broadcast:
			label = fmt.Sprintf("broadcast to %d, %s", c[0], Size(c[1]/1000))
		}
		if !d.ok() {
			t.rows = append(t.rows, []string{label, name, cell(d, format, false), peer, "", ""})
			return
		}
		bp := "–"
		if peer != "" {
			bp = fmt.Sprintf("%s %s", peer, format(pv))
		}
		fl := math.NaN()
		if floor.ok() {
			fl = floor.med
		}
		t.rows = append(t.rows, []string{label, name, format(d.med), bp, ratio(d.med, pv), ratio(d.med, fl)})
		if peer != "" && pv > 0 {
			q := d.med / pv
			item := fmt.Sprintf("%s, %s: %.2f× %s", label, name, q, peer)
			switch {
			case higher && q < 0.9 || !higher && q > 1.1:
				behind = append(behind, item)
			case higher && q > 1.1 || !higher && q < 0.9:
				ahead = append(ahead, item)
			}
		}
	}
	for _, c := range a.cells(Echo) {
		add(Echo, c, "msgs/s", msgsPerSec, true, num)
		add(Echo, c, "CPU µs/msg", cpuPerMsg, false, func(v float64) string { return fmt.Sprintf("%.2f", v) })
		add(Echo, c, "p99", p99, false, us)
	}
	for _, c := range a.cells(Idle) {
		add(Idle, c, "bytes/conn", perConn, false, kib)
	}
	for _, c := range a.cells(Broadcast) {
		add(Broadcast, c, fmt.Sprintf("deliveries/s, W=%d", c[1]%1000), deliveries, true, num)
		add(Broadcast, c, fmt.Sprintf("lag p99, W=%d", c[1]%1000), p99, false, us)
	}
	for _, c := range a.cells(Deflate) {
		add(Deflate, c, "msgs/s", msgsPerSec, true, num)
	}
	if len(t.rows) == 0 { // a run of other scenarios (hub-broadcast)
		return
	}
	fmt.Fprintf(b, "## Duplex against the field\n\nFor msgs/s and deliveries/s a ratio below 1 means Duplex is behind; for CPU, latency and memory a ratio above 1 means Duplex is behind.\n\n%s\n", t)
	if len(behind) > 0 {
		fmt.Fprintf(b, "Behind the best peer by more than 10%%:\n\n- %s\n\n", strings.Join(behind, "\n- "))
	}
	if len(ahead) > 0 {
		fmt.Fprintf(b, "Ahead of the best peer by more than 10%%:\n\n- %s\n\n", strings.Join(ahead, "\n- "))
	}
}

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
		t := &table{head: append([]string{bench}, libs...)}
		for _, c := range cases {
			row := []string{c}
			for _, l := range libs {
				m, ok := cell[[2]string{c, l}]
				if !ok {
					row = append(row, "–")
					continue
				}
				row = append(row, fmt.Sprintf("%s · %.0f · %.0f", nsop(m.NsOp), m.BytesOp, m.AllocsOp))
			}
			t.rows = append(t.rows, row)
		}
		fmt.Fprintf(b, "%s\n", t)
	}
}

func nsop(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f ns", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ns", v)
	}
	return fmt.Sprintf("%.2f ns", v)
}

// idleVariant compares Duplex served by Open (the main tables) with Duplex
// served by Accept and a goroutine of its own, which lets net/http's
// per-connection goroutine and buffers go.
func (a *agg) idleVariant(b *strings.Builder) {
	cs := a.cells(IdleVariant)
	if len(cs) == 0 {
		return
	}
	t := &table{head: []string{"connections", "duplex, Open (above)", "duplex, Accept + go", "Accept / Open"}}
	for _, c := range cs {
		open := a.stat(Idle, c[0], c[1], Ours, perConn)
		acc := a.stat(IdleVariant, c[0], c[1], Ours, perConn)
		r := "–"
		if open.ok() && acc.ok() {
			r = ratio(acc.med, open.med)
		}
		t.rows = append(t.rows, []string{fmt.Sprint(c[0]), cell(open, kib, true), cell(acc, kib, true), r})
	}
	fmt.Fprintf(b, "### Duplex: Open against Accept + go\n\nOpen runs the handler inside net/http's goroutine, which keeps that goroutine and its buffers (bufio reader and writer, the request, its contexts) for the connection's life; Accept followed by `go serve(c)` lets them go when the HTTP handler returns. Same echo loop, same server otherwise:\n\n%s\n", t)
}

// hubTargets are the servers of the hub-broadcast scenario, in the order of
// its tables: the hub, the raw prepared-message loop it is built on (records
// of lib "duplex", variant "prepared"), and gws's Broadcaster.
var hubTargets = []struct{ lib, label string }{
	{Hub, "hub"},
	{Ours, "duplex prepared loop"},
	{"gws", "gws Broadcaster"},
}

// hubRaw is the hub-broadcast scenario's baseline: the raw loop.
const hubRaw = Ours

// hubBroadcast renders the hub-broadcast scenario: per window, each
// target's deliveries/s, delivery lag and server CPU per delivery, with
// ratios to the raw prepared-message loop.
func (a *agg) hubBroadcast(b *strings.Builder, plots map[string]string) {
	cs := a.cells(HubBroadcast)
	if len(cs) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Broadcast through the hub (hub-broadcast)\n\n")
	w("One room, every subscriber a connection of the load generator. The publisher keeps W messages in flight, a message retires when every subscriber has it. ")
	w("Each message is JSON text: a string whose end holds its sequence number and the publisher's send time in nanoseconds; the load generator reads both from the end of each delivery, and the lag is its receive time minus that send time. ")
	w("**hub**: package hub with default Options and its memory broker; each subscriber sends `connect` and `subscribe` over the hub's protocol and the run starts once every subscribe is answered; ")
	w("the publisher is a plain WebSocket on the server's /pub endpoint, each of its messages handed to `Hub.Publish` (history, position, the `pub` push encoded once and framed once as a PreparedMessage, queued on every subscriber's bounded queue, written by the session's writer goroutine); it is no subscriber. ")
	w("**duplex prepared loop**: Duplex without the hub (servers/duplex -variant prepared): the publisher's goroutine calls NewPreparedMessage once per message and WritePrepared on every connection in turn. ")
	w("**gws Broadcaster**: gws's broadcast mode (NewBroadcaster once per message, Broadcast to each connection). ")
	w("In both of these every connection, the publisher too, is a subscriber and gets the message as sent; the hub's subscribers get it inside its pub push (room, offset, epoch, time), about 100 bytes more. ")
	w("Setup CPU is the server's CPU time from its start until every subscriber was seated (hub: connected and subscribed), outside the measured window.\n\n")
	for _, c := range cs {
		w("### %d subscribers, %s messages, W = %d\n\n", c[0], Size(c[1]/1000), c[1]%1000)
		raw := a.stat(HubBroadcast, c[0], c[1], hubRaw, deliveries)
		rawCPU := a.stat(HubBroadcast, c[0], c[1], hubRaw, cpuPerMsg)
		t := &table{head: []string{"server", "deliveries/s", "÷ raw loop", "lag p50", "lag p99", "lag p99.9", "server CPU µs/delivery", "÷ raw loop", "bytes/delivery", "write syscalls/delivery", "server busy", "setup CPU", "lost"}}
		for _, tg := range hubTargets {
			st := a.stat(HubBroadcast, c[0], c[1], tg.lib, deliveries)
			if !st.ok() {
				if st.err != "" || st.na {
					t.rows = append(t.rows, []string{tg.label, cell(st, num, false), "", "", "", "", "", "", "", "", "", "", ""})
				}
				continue
			}
			cpu := a.stat(HubBroadcast, c[0], c[1], tg.lib, cpuPerMsg)
			rr, rc := "–", "–"
			if raw.ok() {
				rr = ratio(st.med, raw.med)
			}
			if rawCPU.ok() {
				rc = ratio(cpu.med, rawCPU.med)
			}
			var lost int64
			for _, r := range a.recs[cellKey{HubBroadcast, c[0], c[1], tg.lib}] {
				lost += r.Lost
			}
			t.rows = append(t.rows, []string{tg.label, cell(st, num, true), rr,
				us(a.stat(HubBroadcast, c[0], c[1], tg.lib, p50).med), us(a.stat(HubBroadcast, c[0], c[1], tg.lib, p99).med),
				us(a.stat(HubBroadcast, c[0], c[1], tg.lib, p999).med),
				cell(cpu, func(v float64) string { return fmt.Sprintf("%.2f", v) }, true), rc,
				fmt.Sprintf("%.0f", a.stat(HubBroadcast, c[0], c[1], tg.lib, func(r Record) float64 { return r.ReplyBytes }).med),
				fmt.Sprintf("%.2f", a.stat(HubBroadcast, c[0], c[1], tg.lib, writes).med),
				fmt.Sprintf("%.0f%%", 100*a.stat(HubBroadcast, c[0], c[1], tg.lib, serverBusy).med),
				fmt.Sprintf("%.2f s", a.stat(HubBroadcast, c[0], c[1], tg.lib, func(r Record) float64 { return r.SetupCPU }).med), fmt.Sprint(lost)})
		}
		w("%s\n", t)
		h := a.stat(HubBroadcast, c[0], c[1], Hub, deliveries)
		if h.ok() && raw.ok() {
			lag := func(f func(Record) float64) string {
				return ratio(a.stat(HubBroadcast, c[0], c[1], Hub, f).med, a.stat(HubBroadcast, c[0], c[1], hubRaw, f).med)
			}
			w("The hub against the raw loop: %s the deliveries/s, %s the lag at p50 and %s at p99, %s the server CPU per delivery.\n\n",
				ratio(h.med, raw.med), lag(p50), lag(p99), lag(cpuPerMsg))
		}
	}
	for _, k := range []string{"hub-broadcast", "hub-broadcast-lag"} {
		if p, ok := plots[k]; ok {
			w("![%s](%s)\n\n", k, p)
		}
	}
}
