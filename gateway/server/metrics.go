package server

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/buildinfo/buildmetric"
)

// metrics are the gateway's Prometheus metrics, on a registry of its own
// (served at /metrics on gateway.http_listen). Per-packet-type counters are
// resolved once, so counting a packet is an array index and an atomic add.
type metrics struct {
	registry *prometheus.Registry

	connections *prometheus.GaugeVec
	accepted    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	closed      *prometheus.CounterVec

	packetsIn, packetsOut [16]prometheus.Counter
	bytesIn, bytesOut     [16]prometheus.Counter

	keepAliveTimeouts prometheus.Counter
	panics            prometheus.Counter
	authFailures      prometheus.Counter
	connectRefused    *prometheus.CounterVec
	aclDenied         *prometheus.CounterVec
	stored            prometheus.Counter
	storeFailures     prometheus.Counter

	messagesIn  [3]prometheus.Counter
	messagesOut [3]prometheus.Counter
	dropped     *prometheus.CounterVec
	// droppedTotal is the sum of dropped over its reasons, for $SYS.
	droppedTotal atomic.Int64
	replayed     prometheus.Counter
	merged       prometheus.Counter
	missed       prometheus.Counter
	dsdLatency   *prometheus.HistogramVec
	// aliasPublishes counts PUBLISHes sent with a Topic Alias, by form;
	// aliasOmitted the topic bytes the alias-only ones left out.
	aliasAssigned, aliasUsed prometheus.Counter
	aliasOmitted             prometheus.Counter
	// storeLatency is dsdLatency{call="store"}, looked up once.
	storeLatency prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strata_gateway_connections",
			Help: "Open MQTT connections, by listener (type.name).",
		}, []string{"listener"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_gateway_connections_accepted_total",
			Help: "Connections accepted, by listener (type.name).",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_gateway_connections_refused_total",
			Help: "Connections closed before CONNECT by a limit or check, by reason: max_connections, max_connections_per_address, max_conn_rate, proxy_header, tls_handshake, ws_origin.",
		}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_gateway_connections_closed_total",
			Help: "Connections closed, by reason.",
		}, []string{"reason"}),
		keepAliveTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_gateway_keepalive_timeouts_total",
			Help: "Connections closed because no packet arrived within keepalive × backoff × 2.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_gateway_panics_recovered_total",
			Help: "Panics recovered at a connection's boundary (each closed only its connection).",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_gateway_auth_failures_total",
			Help: "CONNECTs refused by authentication (bad user name or password, not authorized).",
		}),
		connectRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_gateway_connect_refused_total",
			Help: "CONNECTs refused by admission, authentication or the session backend, by MQTT 5 reason code.",
		}, []string{"code"}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_gateway_acl_denied_total",
			Help: "Requests the ACL refused, by action: publish, subscribe, will (a CONNECT's will topic), deliver (a message not delivered to a subscription a deny rule overlaps).",
		}, []string{"action"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_gateway_messages_stored_total",
			Help: "PUBLISHed messages dsd confirmed as committed (stored or duplicate).",
		}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_gateway_store_failures_total",
			Help: "Stores and Releases dsd refused or could not take.",
		}),
	}
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_messages_dropped_total",
		Help: "Messages dropped, by reason: not delivered to a subscriber (expired, too_large, no_local, acl_denied, dropped_generation, unsubscribed, retained_unavailable) or an inbound QoS 0 PUBLISH not stored because 4,096 waited behind a Store (qos0_overflow).",
	}, []string{"reason"})
	m.replayed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_gateway_messages_replayed_total",
		Help: "Messages sent again (DUP) or answered with PUBREL when a durable session resumed.",
	})
	m.merged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_gateway_messages_merged_total",
		Help: "Messages a subscription left to an older overlapping subscription of the same session, which sent them once for both (MQTT 5 section 3.3.4).",
	})
	m.missed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_gateway_messages_missed_total",
		Help: "Messages durable sessions lost because their generation was dropped while they were away.",
	})
	m.dsdLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "strata_gateway_dsd_call_seconds",
		Help:    "Latency of the gateway's calls to dsd, by call (store, release, commit, watermarks, replay, retained).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"call"})
	m.storeLatency = m.dsdLatency.WithLabelValues("store")
	aliasPublishes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_topic_alias_publishes_total",
		Help: "PUBLISHes sent to MQTT 5 clients with an outbound Topic Alias, by form: assign (topic name and the alias it takes), alias (the alias alone).",
	}, []string{"form"})
	m.aliasAssigned = aliasPublishes.WithLabelValues("assign")
	m.aliasUsed = aliasPublishes.WithLabelValues("alias")
	m.aliasOmitted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strata_gateway_topic_alias_omitted_bytes_total",
		Help: "Topic name bytes left out of PUBLISHes sent with a Topic Alias alone; each aliased PUBLISH carries a 3-byte Topic Alias property, so the bytes saved are this minus 3 × strata_gateway_topic_alias_publishes_total.",
	})
	messagesIn := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_messages_received_total", Help: "Application messages received (PUBLISH from clients), by QoS.",
	}, []string{"qos"})
	messagesOut := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_messages_sent_total", Help: "Application messages sent to subscribers (resends included), by QoS.",
	}, []string{"qos"})
	for q := range 3 {
		m.messagesIn[q] = messagesIn.WithLabelValues(strconv.Itoa(q))
		m.messagesOut[q] = messagesOut.WithLabelValues(strconv.Itoa(q))
	}
	packetsIn := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_packets_received_total", Help: "MQTT packets received, by type.",
	}, []string{"type"})
	packetsOut := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_packets_sent_total", Help: "MQTT packets sent, by type.",
	}, []string{"type"})
	bytesIn := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_bytes_received_total", Help: "Bytes of MQTT packets received, by packet type.",
	}, []string{"type"})
	bytesOut := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_gateway_bytes_sent_total", Help: "Bytes of MQTT packets sent, by packet type.",
	}, []string{"type"})
	for t := packet.CONNECT; t <= packet.AUTH; t++ {
		name := t.String()
		m.packetsIn[t] = packetsIn.WithLabelValues(name)
		m.packetsOut[t] = packetsOut.WithLabelValues(name)
		m.bytesIn[t] = bytesIn.WithLabelValues(name)
		m.bytesOut[t] = bytesOut.WithLabelValues(name)
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connections, m.accepted, m.refused, m.closed, m.keepAliveTimeouts, m.panics,
		m.authFailures, m.connectRefused, m.aclDenied, m.stored, m.storeFailures,
		packetsIn, packetsOut, bytesIn, bytesOut,
		messagesIn, messagesOut, m.dropped, m.replayed, m.merged, m.missed, m.dsdLatency,
		aliasPublishes, m.aliasOmitted,
	)
	m.registry.MustRegister(buildmetric.Collector())
	return m
}

func (m *metrics) received(t packet.Type, n int) {
	if t > 0 && t <= packet.AUTH {
		m.packetsIn[t].Inc()
		m.bytesIn[t].Add(float64(n))
	}
}

func (m *metrics) sent(t packet.Type, n int) {
	if t > 0 && t <= packet.AUTH {
		m.packetsOut[t].Inc()
		m.bytesOut[t].Add(float64(n))
	}
}

func (m *metrics) closedFor(r session.CloseReason) {
	m.closed.WithLabelValues(string(r)).Inc()
	if r == session.ReasonKeepAliveTimeout {
		m.keepAliveTimeouts.Inc()
	}
}

// counted records a session.Counted action.
func (m *metrics) counted(a session.Counted) {
	switch a.Event {
	case "replayed":
		m.replayed.Add(float64(a.N))
	case "overlap_merged":
		m.merged.Add(float64(a.N))
	case "acl_denied":
		// Not delivered: a subscription a deny rule overlaps got a
		// message on a denied topic.
		m.aclDenied.WithLabelValues("deliver").Add(float64(a.N))
		m.drop(a)
	case "topic_alias_assigned":
		m.aliasAssigned.Add(float64(a.N))
	case "topic_alias_used":
		m.aliasUsed.Add(float64(a.N))
	case "topic_alias_omitted_bytes":
		m.aliasOmitted.Add(float64(a.N))
	case "dropped_generation":
		m.missed.Add(float64(a.N))
		m.drop(a)
	default:
		m.drop(a)
	}
}

// drop counts messages dropped for reason a.Event.
func (m *metrics) drop(a session.Counted) {
	m.dropped.WithLabelValues(a.Event).Add(float64(a.N))
	m.droppedTotal.Add(int64(a.N))
}
