package main

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duplexws/duplex/chat"
	"github.com/duplexws/duplex/websocket"
)

// metrics is what GET /metrics exports, in a registry of its own (not
// prometheus.DefaultRegisterer, which any imported package may fill).
//
// Two kinds of metric: events the websocket and hub packages report
// through hooks (handshakes, connection ends, broker publishes), counted
// here as they happen; and counts those packages keep themselves
// (connections open, messages and bytes, rooms, queues), read from
// chat.Server.Stats at each scrape by statsCollector, so that the hot path
// of a message touches nothing of Prometheus.
type metrics struct {
	reg *prometheus.Registry

	handshakes       *prometheus.CounterVec   // endpoint, transport, result
	handshakeSeconds *prometheus.HistogramVec // endpoint, transport; accepted handshakes
	closesSent       *prometheus.CounterVec   // endpoint, code
	closesReceived   *prometheus.CounterVec   // endpoint, code
	disconnects      *prometheus.CounterVec   // endpoint, by
	publishSeconds   *prometheus.HistogramVec // result
}

const namespace = "duplex"

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "websocket", Name: "handshakes_total",
			Help: "WebSocket handshakes answered, by endpoint, transport (http1, http2) and result: accepted, " +
				"rejected (a bad request or a refused origin, 4xx), limit (503 at -max-connections), " +
				"rate_limited (429 over -handshake-rate), " +
				"shutting_down (503 during shutdown) or failed (the response could not be written, 5xx).",
		}, []string{"endpoint", "transport", "result"}),
		handshakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "websocket", Name: "handshake_duration_seconds",
			Help: "Time from a WebSocket request's header, read, to its accepted handshake's response, sent.",
			// A handshake is one write on the server's side: from tens of
			// microseconds to what a congested socket makes of it.
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"endpoint", "transport"}),
		closesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "websocket", Name: "close_codes_sent_total",
			Help: "Close frames the server sent, by endpoint and code (3xxx and 4xxx: application codes beyond 4099), counted when the connection ends.",
		}, []string{"endpoint", "code"}),
		closesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "websocket", Name: "close_codes_received_total",
			Help: "Close frames the server received, by endpoint and code (1005: no code; 3xxx and 4xxx: application codes beyond 4099), counted when the connection ends.",
		}, []string{"endpoint", "code"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "websocket", Name: "disconnects_total",
			Help: "WebSocket connections ended, by endpoint and by whose close frame came first: server, client, or none (lost or dropped without a closing handshake).",
		}, []string{"endpoint", "by"}),
		publishSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "hub", Name: "broker_publish_duration_seconds",
			Help:    "Time the broker took to append a publication, by result (ok, error).",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.handshakes, m.handshakeSeconds, m.closesSent, m.closesReceived, m.disconnects, m.publishSeconds,
	)
	return m
}

// hooks returns the hooks of one chat endpoint (chat.Options.Hooks).
func (m *metrics) hooks(endpoint string) websocket.ServerHooks {
	return websocket.ServerHooks{
		Handshake: func(h websocket.HandshakeInfo) {
			transport := transportLabel(h.HTTPVersion)
			m.handshakes.WithLabelValues(endpoint, transport, handshakeResult(h)).Inc()
			if h.Err == nil {
				m.handshakeSeconds.WithLabelValues(endpoint, transport).Observe(h.Duration.Seconds())
			}
		},
		End: func(e websocket.EndInfo) {
			if e.Stats.CloseSent != 0 {
				m.closesSent.WithLabelValues(endpoint, codeLabel(e.Stats.CloseSent)).Inc()
			}
			if e.Stats.CloseReceived != 0 {
				m.closesReceived.WithLabelValues(endpoint, codeLabel(e.Stats.CloseReceived)).Inc()
			}
			by := "none"
			switch e.Stats.ClosedBy {
			case websocket.ClosedByLocal:
				by = "server"
			case websocket.ClosedByPeer:
				by = "client"
			}
			m.disconnects.WithLabelValues(endpoint, by).Inc()
		},
	}
}

// observePublish is the hub's ObservePublish.
func (m *metrics) observePublish(_ string, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.publishSeconds.WithLabelValues(result).Observe(took.Seconds())
}

// watch exports the counts of s at each scrape.
func (m *metrics) watch(s *chat.Server) {
	m.reg.MustRegister(newStatsCollector(s))
}

// handler serves the registry in the Prometheus text format (or
// OpenMetrics or protobuf, as the scraper asks).
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func transportLabel(v websocket.HTTPVersion) string {
	if v == websocket.HTTP2 {
		return "http2"
	}
	return "http1"
}

func handshakeResult(h websocket.HandshakeInfo) string {
	switch {
	case h.Err == nil:
		return "accepted"
	case errors.Is(h.Err, websocket.ErrConnectionLimit):
		return "limit"
	case errors.Is(h.Err, websocket.ErrShuttingDown):
		return "shutting_down"
	case errors.Is(h.Err, websocket.ErrRateLimited):
		return "rate_limited"
	case h.Status >= 400 && h.Status < 500:
		return "rejected"
	}
	return "failed"
}

// codeLabel names a close code for a label. A peer may send any code from
// 3000 to 4999: those beyond the codes this server uses itself (up to
// 4099, the hub's 40xx) are grouped by thousand, so that a client cannot
// make the label set grow without bound.
func codeLabel(code websocket.StatusCode) string {
	switch {
	case code >= 1000 && code <= 1015, code >= 4000 && code <= 4099:
		return strconv.Itoa(int(code))
	case code >= 3000 && code <= 3999:
		return "3xxx"
	case code >= 4100 && code <= 4999:
		return "4xxx"
	}
	return "other"
}

// statsCollector reads chat.Server.Stats once per scrape.
type statsCollector struct {
	s *chat.Server

	open, msgsIn, msgsOut, bytesIn, bytesOut *prometheus.Desc // by endpoint
	rooms, subscriptions, slowConsumers      *prometheus.Desc
	eventStreams                             *prometheus.Desc
	publications, queueBytes, queueMessages  *prometheus.Desc
}

func newStatsCollector(s *chat.Server) *statsCollector {
	ws := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "websocket", name), help, []string{"endpoint"}, nil)
	}
	hub := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "hub", name), help, nil, nil)
	}
	const wire = " Wire bytes: every frame's header, masking key and payload as sent (compressed when compressed), control frames included."
	return &statsCollector{
		s:             s,
		open:          ws("connections", "WebSocket connections open, from the accepted handshake until closed, by endpoint (echo: /chat/connect, hub: /chat/hub)."),
		msgsIn:        ws("messages_received_total", "Data messages received, by endpoint."),
		msgsOut:       ws("messages_sent_total", "Data messages sent, by endpoint."),
		bytesIn:       ws("received_bytes_total", "Bytes received on WebSocket connections after the handshake, by endpoint."+wire),
		bytesOut:      ws("sent_bytes_total", "Bytes sent on WebSocket connections after the handshake, by endpoint."+wire),
		rooms:         hub("rooms", "Rooms with subscribers on this server."),
		eventStreams:  hub("event_streams", "Event streams (SSE, /chat/rooms/{room}/events) open; they count against -max-connections."),
		subscriptions: hub("subscriptions", "Room subscriptions of this server's hub clients."),
		slowConsumers: hub("slow_consumer_closes_total", "Hub clients whose send queue overflowed: WebSockets closed with 4008, event streams ended."),
		publications:  hub("publications_total", "Publications appended through this server's hub."),
		queueBytes:    hub("send_queue_bytes", "Bytes of publications and presence events waiting in the hub connections' send queues and the event streams' buffers."),
		queueMessages: hub("send_queue_messages", "Publications and presence events waiting in the hub connections' send queues and the event streams' buffers."),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.msgsIn, c.msgsOut, c.bytesIn, c.bytesOut,
		c.rooms, c.subscriptions, c.slowConsumers, c.publications, c.queueBytes, c.queueMessages, c.eventStreams} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, e := range []struct {
		name string
		ws   websocket.ServerStats
	}{{chat.EndpointEcho, st.Echo}, {chat.EndpointHub, st.Hub.WebSocket}} {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(e.ws.Open), e.name)
		ch <- prometheus.MustNewConstMetric(c.msgsIn, prometheus.CounterValue, float64(e.ws.MessagesIn), e.name)
		ch <- prometheus.MustNewConstMetric(c.msgsOut, prometheus.CounterValue, float64(e.ws.MessagesOut), e.name)
		ch <- prometheus.MustNewConstMetric(c.bytesIn, prometheus.CounterValue, float64(e.ws.BytesIn), e.name)
		ch <- prometheus.MustNewConstMetric(c.bytesOut, prometheus.CounterValue, float64(e.ws.BytesOut), e.name)
	}
	h := st.Hub
	ch <- prometheus.MustNewConstMetric(c.rooms, prometheus.GaugeValue, float64(h.Rooms))
	ch <- prometheus.MustNewConstMetric(c.eventStreams, prometheus.GaugeValue, float64(h.EventStreams))
	ch <- prometheus.MustNewConstMetric(c.subscriptions, prometheus.GaugeValue, float64(h.Subscriptions))
	ch <- prometheus.MustNewConstMetric(c.slowConsumers, prometheus.CounterValue, float64(h.SlowConsumers))
	ch <- prometheus.MustNewConstMetric(c.publications, prometheus.CounterValue, float64(h.Publications))
	ch <- prometheus.MustNewConstMetric(c.queueBytes, prometheus.GaugeValue, float64(h.QueuedBytes))
	ch <- prometheus.MustNewConstMetric(c.queueMessages, prometheus.GaugeValue, float64(h.QueuedMessages))
}
