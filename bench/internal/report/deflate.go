package report

import (
	"fmt"
	"slices"
	"strings"
)

// Compression modes, as the server's permessage-deflate answer says.
const (
	takeover   = "takeover"
	noTakeover = "no takeover"
)

// knownModes is what each bench server negotiates when the client offers
// "permessage-deflate; client_no_context_takeover" (the load generator's
// offer), read from servers/<lib>/main.go and the library's source at the
// go.mod version. The records' Extension (the server's answer) overrides
// it; it serves results written before the answer was kept.
var knownModes = map[string]string{
	Ours:                      takeover,   // CompressionOptions{Binary: true}: context takeover is the default
	Series(Ours, "nocontext"): noTakeover, // + NoContextTakeover
	"gorilla":                 noTakeover, // v1.5.3 server.go always answers server_no_context_takeover
	"coder":                   takeover,   // servers/coder asks CompressionContextTakeover (v1.8.15; its default is no compression)
	"gws":                     noTakeover, // v1.8.9 PermessageDeflate.ServerContextTakeover is false unless set
	"gobwas":                  noTakeover, // wsflate.DefaultParameters: ServerNoContextTakeover
	"nbio":                    noTakeover, // v1.6.8 upgrader.go always answers server_no_context_takeover
}

// deflateMode is the mode a server ran in the deflate scenarios: from its
// handshake answer if a record kept it, else knownModes ("" if unknown).
func (a *agg) deflateMode(series string) string {
	for _, r := range a.res.Records {
		if (r.Scenario == Deflate || r.Scenario == DeflateIdle) && r.Extension != "" && Series(r.Lib, r.Variant) == series {
			if strings.Contains(strings.ToLower(r.Extension), "server_no_context_takeover") {
				return noTakeover
			}
			return takeover
		}
	}
	return knownModes[series]
}

// deflateColumns are the libraries (but the floor) and Duplex's variants
// (in deflate or deflate-idle),
// each headed with the mode it negotiated, in the report's order.
func (a *agg) deflateColumns() []column {
	cols := a.columns(Deflate, true)
	for _, v := range a.variants[DeflateIdle] { // a variant run in deflate-idle alone
		if !slices.ContainsFunc(cols, func(c column) bool { return c.series == v }) {
			cols = append(cols, column{v, v})
		}
	}
	for i, c := range cols {
		if mode := a.deflateMode(c.series); mode != "" && a.compresses(c.series) {
			cols[i].head += ", " + mode
		}
	}
	return cols
}

// compresses says whether a series' server was built with permessage-deflate.
func (a *agg) compresses(series string) bool {
	lib, _, _ := strings.Cut(series, " (")
	for _, l := range a.res.Libs {
		if l.Name == lib {
			return l.Built && l.Compression
		}
	}
	return false
}

// modeColumns are the servers with permessage-deflate grouped by mode
// (without context takeover first), Duplex first in each.
func (a *agg) modeColumns() []column {
	all := a.deflateColumns()
	var out []column
	for _, mode := range []string{noTakeover, takeover, ""} {
		for _, ours := range []bool{true, false} {
			for _, c := range all {
				if a.compresses(c.series) && a.deflateMode(c.series) == mode && strings.HasPrefix(c.series, Ours) == ours {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// sameMode is best's filter for the peers in the mode of series.
func (a *agg) sameMode(series string) func(lib string) bool {
	mode := a.deflateMode(series)
	return func(lib string) bool { return lib != Ours && a.deflateMode(lib) == mode }
}

func (a *agg) deflate(b *strings.Builder, plots map[string]string) {
	cs := a.conns(Deflate)
	if len(cs) == 0 && len(a.cells(DeflateIdle)) == 0 {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 4. Echo with permessage-deflate\n\n")
	if len(cs) > 0 {
		w("The client sends 64 different chat-like JSON messages in turn (the same one every time would let a server that keeps context reply with a back-reference), as binary messages, each deflated on its own (it offers client_no_context_takeover); every server compresses its replies with its own defaults (duplex: CompressionOptions{Binary: true}, as it compresses only text by default, and `-variant nocontext` adds NoContextTakeover; gobwas: wsflate at BestSpeed, no context takeover). n/a: the library does not support compression. Each column says the mode the server negotiated (its handshake answer: server_no_context_takeover or not).\n\n")
	}
	cols := a.deflateColumns()
	for _, c := range cs {
		cells := a.cellsWith(Deflate, c)
		table := func(render func(at, column) string) *table {
			return grid("payload", cells, payloadHead, cols, columnHead, render)
		}
		w("### %d connections\n\nMessages echoed per second:\n\n%s\n", c, table(a.values(msgsPerSec, num)))
		w("Ratios of msgs/s against the best library:\n\n%s\n", table(a.ratio(ratios{f: msgsPerSec, higher: true})))
		w("Server CPU time per message (µs):\n\n%s\n", table(a.values(cpuPerMsg, fixed2)))
		w("Reply size on the wire, payload bytes per message (what the server's compression achieved):\n\n%s\n", table(a.values(replyBytes, fixed0)))
	}
	w("Defaults differ: duplex and coder keep the compression context between messages (duplex with an 8 KiB window, its compressor pooled and its history restored per message), gorilla, gobwas, gws (by default) and nbio compress each message on its own (no context takeover). Keeping context makes replies smaller and costs CPU.\n\n")
	a.deflateModes(b, a.modeColumns())
	if p, ok := plots["deflate"]; ok {
		w("![deflate](%s)\n\n", p)
	}
}

// deflateRow is a row of the mode-for-mode table.
type deflateRow struct {
	head   string
	render func(column) string
}

// deflateModes is the mode-for-mode table: msgs/s, its ratio to the best
// peer in the same mode, and memory per connection from deflate-idle, for
// every server with compression.
func (a *agg) deflateModes(b *strings.Builder, cols []column) {
	var rows []deflateRow
	for _, x := range a.cells(Deflate) {
		x := x
		label := fmt.Sprintf("c=%d %s", x.conns, Size(x.payload))
		rows = append(rows,
			deflateRow{"msgs/s, " + label, func(c column) string { return cell(a.stat(x, c.series, msgsPerSec), num, true) }},
			deflateRow{"÷ best peer in its mode, " + label, func(c column) string {
				_, best := a.best(x, msgsPerSec, true, a.sameMode(c.series))
				return ratio(a.stat(x, c.series, msgsPerSec).orNaN(), best)
			}},
			deflateRow{"server CPU µs/msg, " + label, func(c column) string { return cell(a.stat(x, c.series, cpuPerMsg), fixed2, false) }})
	}
	for _, x := range a.cells(DeflateIdle) {
		x := x
		rows = append(rows, deflateRow{fmt.Sprintf("memory per idle connection, c=%d", x.conns), func(c column) string {
			return cell(a.stat(x, c.series, perConn), kib, true)
		}})
	}
	t := grid("", rows, func(r deflateRow) string { return r.head }, cols, columnHead, func(r deflateRow, c column) string { return r.render(c) })
	fmt.Fprintf(b, "### Mode for mode\n\nDuplex against the peers in the same mode (without context takeover: duplex -variant nocontext; with it: Duplex's default), and the memory each holds per connection once idle after %d compressed messages (the deflate-idle scenario: server RSS growth per connection, every connection negotiated permessage-deflate):\n\n%s\n", DeflateChat, t)
}

// DeflateChat is how many compressed messages each connection of the
// deflate-idle scenario exchanges before it goes idle.
const DeflateChat = 3
