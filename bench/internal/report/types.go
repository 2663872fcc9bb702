// Package report turns the harness's records into the markdown report and
// the PNG plots of bench/results.
package report

import "time"

// Scenarios.
const (
	Echo = "echo"
	Idle = "idle"
	// IdleVariant is idle for a variant of a server (Record.Variant), kept
	// apart from the main tables.
	IdleVariant = "idle-variant"
	// EchoVariant and PipelinedVariant are echo and pipelined echo for a
	// variant of Duplex's server (Record.Variant: "events", the event loop;
	// "accept"), kept apart from the main tables like IdleVariant.
	EchoVariant      = "echo-variant"
	PipelinedVariant = "pipelined-variant"
	Broadcast        = "broadcast"
	Deflate          = "deflate"
	// Pipelined is echo with Record.Depth messages in flight per connection
	// (Settings.PipelinedDepth), against which Flush batching is measured.
	Pipelined = "pipelined"
	// DeflateIdle is idle with permessage-deflate negotiated and a few
	// compressed messages exchanged per connection before it goes idle
	// (Record.Variant "nocontext": Duplex without context takeover). Not in
	// the default run; its follow-up is results/followup/deflate-memory.md.
	DeflateIdle = "deflate-idle"
	// HubBroadcast is broadcast to one room through package hub (Lib Hub:
	// subscribers on the hub's protocol, Hub.Publish for each message),
	// beside the raw prepared-message loop (Lib "duplex", Variant
	// "prepared") and gws's Broadcaster, with JSON text messages that carry
	// their send time. Not in the default run.
	HubBroadcast = "hub-broadcast"
)

// Series names a server in the tables: the library, and its variant if any,
// "duplex (accept)".
func Series(lib, variant string) string {
	if variant == "" {
		return lib
	}
	return lib + " (" + variant + ")"
}

// SteadyCollections is how many garbage collections the idle scenario runs
// before its steady figure (Record.SteadyBytesPerConn): two, as the runtime
// does by itself in four idle minutes. After the first the scavenger still
// keeps room for the handshakes' garbage (see the harness's idle.go).
const SteadyCollections = 2

// Hub is the name of the hub server (servers/hub) in the records; it is no
// WebSocket library, and only the HubBroadcast scenario runs it.
const Hub = "hub"

// Machine is where the run happened.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	MemTotal  string `json:"mem_total"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	FDLimit   uint64 `json:"fd_limit"`
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

// Lib is one server under test.
type Lib struct {
	Name        string `json:"name"`
	Module      string `json:"module"`
	Version     string `json:"version"`
	Built       bool   `json:"built"`
	BuildErr    string `json:"build_error,omitempty"`
	Compression bool   `json:"compression"`
}

// Settings are the run's parameters.
type Settings struct {
	Command   string        `json:"command"`
	Short     bool          `json:"short"`
	Rounds    int           `json:"rounds"`
	Warmup    time.Duration `json:"warmup"`
	Duration  time.Duration `json:"duration"`
	ServerCPU string        `json:"server_cpu"`
	LoadCPU   string        `json:"load_cpu"`
	Depth     int           `json:"depth"`
	Windows   []int         `json:"windows"`
	// IdleRounds are the rounds that ran the idle and deflate-idle
	// scenarios, the first ones (0 in results written before it: Rounds).
	IdleRounds int `json:"idle_rounds,omitempty"`
	// ShuffledOrder: each cell ran the libraries in an order of its own;
	// runs from before it rotated one order per round.
	ShuffledOrder bool `json:"shuffled_order,omitempty"`
	// PipelinedDepth is the pipelined scenario's messages in flight per connection.
	PipelinedDepth int `json:"pipelined_depth,omitempty"`
}

// Record is one measurement: one library, one scenario cell, one round.
type Record struct {
	Scenario string `json:"scenario"`
	Lib      string `json:"lib"`
	Round    int    `json:"round"`
	Conns    int    `json:"conns"`
	Payload  int    `json:"payload"`
	Window   int    `json:"window,omitempty"`  // broadcast: messages in flight
	Variant  string `json:"variant,omitempty"` // a server variant (IdleVariant, deflate's nocontext, hub-broadcast's prepared)
	Depth    int    `json:"depth,omitempty"`   // echo, pipelined, deflate: messages in flight per connection
	NA       bool   `json:"na,omitempty"`      // the library does not support the scenario
	Err      string `json:"error,omitempty"`   // the run failed

	// echo and deflate
	MsgsPerSec float64 `json:"msgs_per_sec,omitempty"`
	P50        float64 `json:"p50_us,omitempty"`
	P99        float64 `json:"p99_us,omitempty"`
	P999       float64 `json:"p999_us,omitempty"`
	CPUPerMsg  float64 `json:"cpu_us_per_msg,omitempty"` // server CPU time per message (per delivery in broadcast)
	ServerBusy float64 `json:"server_busy,omitempty"`    // server CPU seconds per second
	LoadBusy   float64 `json:"load_busy,omitempty"`      // load generator CPU seconds per second
	// server read-type and write-type system calls per message (per delivery in broadcast)
	ReadsPerMsg  float64 `json:"reads_per_msg,omitempty"`
	WritesPerMsg float64 `json:"writes_per_msg,omitempty"`
	Negotiated   int     `json:"negotiated,omitempty"`  // deflate: connections that negotiated it
	Extension    string  `json:"extension,omitempty"`   // deflate: the server's Sec-WebSocket-Extensions answer
	ReplyBytes   float64 `json:"reply_bytes,omitempty"` // payload bytes per reply on the wire (compressed size with deflate)
	Lost         int64   `json:"lost,omitempty"`        // connections (echo) or deliveries (broadcast) lost

	// idle
	RSSBase      int64   `json:"rss_base,omitempty"`
	RSS          int64   `json:"rss,omitempty"`
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"`
	// SteadyBytesPerConn is BytesPerConn measured again after
	// SteadyCollections garbage collections (those the runtime runs by
	// itself, one every two idle minutes), the RSS settling after each:
	// what an idle server holds for good, without the handshakes' garbage
	// the heap had room for.
	SteadyBytesPerConn float64 `json:"steady_bytes_per_conn,omitempty"`
	SteadyCollections  int     `json:"steady_collections,omitempty"` // 0: a run from before it counted them, which ran one

	// broadcast (latencies in P50/P99/P999 are delivery lags)
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	SetupCPU         float64 `json:"setup_cpu_seconds,omitempty"` // server CPU from its start until every subscriber was seated (hub: subscribed)
}

// Micro is one microbenchmark result (go test -bench -benchmem).
type Micro struct {
	Bench    string  `json:"bench"` // Mask, FrameHeader, ReadMessage, WriteMessage, RoundTrip
	Lib      string  `json:"lib"`
	Case     string  `json:"case"` // size, or encode/decode
	NsOp     float64 `json:"ns_op"`
	BytesOp  float64 `json:"bytes_op"`
	AllocsOp float64 `json:"allocs_op"`
	MBs      float64 `json:"mb_s,omitempty"`
}

// Results is everything a run produced.
type Results struct {
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Libs     []Lib     `json:"libs"`
	Records  []Record  `json:"records"`
	Micro    []Micro   `json:"micro,omitempty"`
	MicroErr string    `json:"micro_error,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}
