package report

import (
	"fmt"
	"strings"
)

// hubTargets are the servers of the hub-broadcast scenario, in the order of
// its tables: the hub, the raw prepared-message loop it is built on (records
// of lib "duplex", variant "prepared"), and gws's Broadcaster.
var hubTargets = []column{
	{Hub, "hub"},
	{hubRaw, "duplex prepared loop"},
	{"gws", "gws Broadcaster"},
}

// hubRaw is the hub-broadcast scenario's baseline: the raw loop.
var hubRaw = Series(Ours, "prepared")

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
	const cpuRaw = "CPU ÷ raw loop" // headed "÷ raw loop", like the deliveries' ratio
	metrics := []string{"deliveries/s", "÷ raw loop", "lag p50", "lag p99", "lag p99.9", "server CPU µs/delivery", cpuRaw, "bytes/delivery", "write syscalls/delivery", "server busy", "setup CPU", "lost"}
	for _, x := range cs {
		w("### %d subscribers, %s messages, W = %d\n\n", x.conns, Size(x.payload/1000), x.payload%1000)
		raw := a.stat(x, hubRaw, deliveries)
		rawCPU := a.stat(x, hubRaw, cpuPerMsg)
		var shown []column // a target with neither figure nor failure did not run
		for _, tg := range hubTargets {
			if st := a.stat(x, tg.series, deliveries); st.ok() || st.err != "" || st.na {
				shown = append(shown, tg)
			}
		}
		med := func(c column, f metric) float64 { return a.stat(x, c.series, f).med }
		t := grid("server", shown, columnHead, metrics, func(h string) string {
			if h == cpuRaw {
				return "÷ raw loop"
			}
			return h
		}, func(c column, h string) string {
			if v, ok := a.deliveryCell(x, c.series, h, h == metrics[0]); ok {
				return v
			}
			switch h {
			case "÷ raw loop":
				return ratio(med(c, deliveries), raw.orNaN())
			case "server CPU µs/delivery":
				return cell(a.stat(x, c.series, cpuPerMsg), fixed2, true)
			case cpuRaw:
				return ratio(med(c, cpuPerMsg), rawCPU.orNaN())
			case "bytes/delivery":
				return fixed0(med(c, replyBytes))
			case "server busy":
				return percent(med(c, serverBusy))
			}
			return fmt.Sprintf("%.2f s", med(c, setupCPU)) // setup CPU
		})
		w("%s\n", t)
		h := a.stat(x, Hub, deliveries)
		if h.ok() && raw.ok() {
			lag := func(f metric) string { return ratio(a.stat(x, Hub, f).med, a.stat(x, hubRaw, f).med) }
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
