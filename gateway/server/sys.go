package server

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratamq/strata/gateway/session"
	"github.com/stratamq/strata/internal/buildinfo"
	"github.com/stratamq/strata/lts"
)

// sysTopics publishes the gateway's $SYS topics (docs/operations.md, "$SYS
// topics"): every gateway.sys_interval it reads its counters and hands the
// values, as session.LocalMessages, to the machines of its connections,
// which send them to matching subscriptions at QoS 0. Nothing goes to dsd:
// the values are this gateway's, and a client of another gateway sees that
// gateway's. The latest value of each topic is kept for new subscriptions
// (session.Config.LocalRetained).
type sysTopics struct {
	s       *Server
	prefix  string // "$SYS/brokers/{gateway}/"
	version string
	started time.Time
	mu      struct {
		sync.Mutex
		latest []session.LocalMessage
	}
}

func newSysTopics(s *Server, gateway string, started time.Time) *sysTopics {
	return &sysTopics{s: s, prefix: "$SYS/brokers/" + gateway + "/", version: buildinfo.Get().Version, started: started}
}

// loop publishes every interval until the server stops.
func (y *sysTopics) loop(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			y.publish(now)
		}
	}
}

// publish reads the values, keeps them as the latest and sends them to
// every connection's machine.
func (y *sysTopics) publish(now time.Time) {
	conns := y.s.connections()
	clients, subs := 0, 0
	for _, c := range conns {
		c.withMachineDo(func(m *session.Machine) {
			if m.Connected() {
				clients++
				subs += m.Subscriptions()
			}
		})
	}
	msgs := y.messages(now, clients, subs)
	y.mu.Lock()
	y.mu.latest = msgs
	y.mu.Unlock()
	for _, c := range conns {
		c.local(msgs)
	}
}

// messages returns the $SYS messages for the values read at now, in a
// fixed order: the per-gateway layout (after EMQX's
// $SYS/brokers/{node}/...), then mosquitto's names under $SYS/broker/.
func (y *sysTopics) messages(now time.Time, clients, subs int) []session.LocalMessage {
	m := y.s.metrics
	var pubIn, pubOut, pktIn, pktOut, bytesIn, bytesOut float64
	for q := range 3 {
		pubIn += counterValue(m.messagesIn[q])
		pubOut += counterValue(m.messagesOut[q])
	}
	for i := range m.packetsIn {
		if m.packetsIn[i] != nil {
			pktIn += counterValue(m.packetsIn[i])
			pktOut += counterValue(m.packetsOut[i])
			bytesIn += counterValue(m.bytesIn[i])
			bytesOut += counterValue(m.bytesOut[i])
		}
	}
	dropped := float64(m.droppedTotal.Load())
	uptime := strconv.FormatInt(int64(now.Sub(y.started)/time.Second), 10)
	n := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	var out []session.LocalMessage
	add := func(topic, value string) {
		out = append(out, session.LocalMessage{Topic: topic, Payload: []byte(value)})
	}
	p := y.prefix
	add(p+"version", y.version)
	add(p+"uptime", uptime)
	add(p+"datetime", now.UTC().Format(time.RFC3339))
	add(p+"stats/connections/count", strconv.Itoa(clients))
	add(p+"stats/subscriptions/count", strconv.Itoa(subs))
	add(p+"metrics/messages/received", n(pubIn))
	add(p+"metrics/messages/sent", n(pubOut))
	add(p+"metrics/messages/dropped", n(dropped))
	add(p+"metrics/packets/received", n(pktIn))
	add(p+"metrics/packets/sent", n(pktOut))
	add(p+"metrics/bytes/received", n(bytesIn))
	add(p+"metrics/bytes/sent", n(bytesOut))
	add("$SYS/broker/version", "strata gateway "+y.version)
	add("$SYS/broker/uptime", uptime+" seconds")
	add("$SYS/broker/clients/connected", strconv.Itoa(clients))
	add("$SYS/broker/subscriptions/count", strconv.Itoa(subs))
	add("$SYS/broker/messages/received", n(pktIn))
	add("$SYS/broker/messages/sent", n(pktOut))
	add("$SYS/broker/publish/messages/received", n(pubIn))
	add("$SYS/broker/publish/messages/sent", n(pubOut))
	add("$SYS/broker/publish/messages/dropped", n(dropped))
	add("$SYS/broker/bytes/received", n(bytesIn))
	add("$SYS/broker/bytes/sent", n(bytesOut))
	return out
}

// retained returns the latest messages filter matches; it is the zones'
// session.Config.LocalRetained.
func (y *sysTopics) retained(filter string) []session.LocalMessage {
	if !strings.HasPrefix(filter, "$SYS") {
		return nil
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	var out []session.LocalMessage
	for _, msg := range y.mu.latest {
		if lts.MatchTopic(filter, msg.Topic) {
			out = append(out, msg)
		}
	}
	return out
}

// local hands the gateway's own messages to the connection's machine.
func (c *conn) local(msgs []session.LocalMessage) {
	defer c.recoverPanic("local")
	c.withMachineDo(func(m *session.Machine) { c.applyLocked(m.Local(time.Now(), msgs)) })
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return d.GetCounter().GetValue()
}
