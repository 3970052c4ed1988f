package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/hist"
)

// Report is mqttload's final summary; --json prints it as is.
type Report struct {
	Config Config `json:"config"`
	// Mode is live or queued.
	Mode string `json:"mode"`
	// PublishSeconds is the length of the publish phase.
	PublishSeconds float64 `json:"publish_s"`
	// Published counts PUBLISH packets sent; Acked those acknowledged with
	// success (PUBACK, or PUBCOMP for QoS 2; none at QoS 0), Failed those
	// refused, Unknown those left without an answer.
	Published int64 `json:"published"`
	Acked     int64 `json:"acked"`
	Failed    int64 `json:"failed"`
	Unknown   int64 `json:"unknown"`
	// Delivered counts deliveries to subscribers' applications, Unique the
	// first delivery of each message per subscriber, Redelivered the
	// others. Suppressed counts QoS 2 resends mqttrec did not deliver.
	Delivered   int64 `json:"delivered"`
	Unique      int64 `json:"unique"`
	Redelivered int64 `json:"redelivered"`
	Suppressed  int64 `json:"suppressed"`
	// Foreign counts messages of other runs (not recorded when retained).
	Foreign      int64 `json:"foreign"`
	Violations   int64 `json:"violations"`
	Reconnects   int64 `json:"reconnects"`
	SessionsLost int64 `json:"sessions_lost"`
	// HeldAtEnd counts inbound QoS 2 packet identifiers still awaiting
	// PUBREL when the subscribers stopped.
	HeldAtEnd int64 `json:"qos2_held_at_end"`
	// PublishRate is acked messages/s over the publish phase (published
	// messages/s at QoS 0).
	PublishRate float64 `json:"publish_msgs_per_s"`
	// DeliverRate is unique deliveries/s, from the start of publishing to
	// the last first delivery.
	DeliverRate float64 `json:"deliver_msgs_per_s"`
	// AckLatency is publish → PUBACK (QoS 1) or PUBCOMP (QoS 2).
	AckLatency hist.Summary `json:"ack_latency"`
	// DeliverLatency is publish → first delivery at each subscriber.
	DeliverLatency hist.Summary `json:"deliver_latency"`
	// RetainedGot and RetainedWant: the late subscriber's retained
	// messages and the topics with an acked retained publish (--retain).
	RetainedGot  int64 `json:"retained_got,omitempty"`
	RetainedWant int64 `json:"retained_want,omitempty"`
	// Replay is the offline-queue replay (--queued).
	Replay *ReplayReport `json:"replay,omitempty"`
	// Check is the checker's verdict (--check).
	Check *CheckReport `json:"check,omitempty"`
	// Interrupted is true when the run was stopped (Ctrl-C).
	Interrupted bool `json:"interrupted"`
	// Error is the error that ended the run early, if any.
	Error string `json:"error,omitempty"`
}

// CheckReport is internal/checker's verdict in numbers.
type CheckReport struct {
	OK             bool                           `json:"ok"`
	Lost           int                            `json:"lost"`
	LostBy         map[string]checker.LostClasses `json:"lost_by,omitempty"`
	Unexpected     int                            `json:"unexpected"`
	Duplicates     int                            `json:"duplicates"`
	Redeliveries   int                            `json:"qos1_redeliveries"`
	QoS2Duplicates int                            `json:"qos2_duplicates"`
	Order          int                            `json:"order"`
	Recovered      int                            `json:"recovered"`
	RetainedBad    int                            `json:"retained_bad"`
	SessionsLost   int                            `json:"sessions_lost"`
	Violations     int                            `json:"violations"`
	// Summary is the checker's text report, with examples.
	Summary string `json:"summary"`
}

// fill copies the counters into the report.
func (r *runner) fill(rep *Report) {
	st := &r.stats
	rep.Published, rep.Acked, rep.Failed, rep.Unknown = st.published.Load(), st.acked.Load(), st.failed.Load(), st.unknown.Load()
	rep.Delivered, rep.Unique, rep.Redelivered = st.delivered.Load(), st.unique.Load(), st.redelivers.Load()
	rep.Suppressed, rep.Foreign, rep.Violations = st.suppressed.Load(), st.foreign.Load(), st.violations.Load()
	rep.Reconnects, rep.SessionsLost, rep.HeldAtEnd = st.reconnects.Load(), st.sessionsLost.Load(), st.heldAtEnd.Load()
	rep.RetainedGot, rep.RetainedWant = st.retainedGot.Load(), st.retainedWant.Load()
	if rep.PublishSeconds > 0 {
		n := rep.Acked
		if r.cfg.QoS == 0 {
			n = rep.Published
		}
		rep.PublishRate = float64(n) / rep.PublishSeconds
	}
	if last := st.lastDeliver.Load(); last != 0 && !r.pubStart.IsZero() {
		if d := time.Unix(0, last).Sub(r.pubStart).Seconds(); d > 0 {
			rep.DeliverRate = float64(rep.Unique) / d
		}
	}
	rep.AckLatency = st.ackLat.Summary()
	rep.DeliverLatency = st.e2eLat.Summary()
}

func (rep *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	return enc.Encode(rep)
}

func (rep *Report) writeText(w io.Writer) error {
	var b strings.Builder
	c := &rep.Config
	inflight := ""
	if c.Inflight > 1 {
		inflight = fmt.Sprintf(", in flight %d", c.Inflight)
	}
	fmt.Fprintf(&b, "mqttload %s: MQTT %d, %d publishers (QoS %d, %s%s), %d subscribers (QoS %d, %q), payload %d B\n",
		rep.Mode, c.MQTT, c.Publishers, c.QoS, c.PubClient, inflight, c.Subscribers, c.SubQoS, c.Filter, c.Payload)
	fmt.Fprintf(&b, "publish:  %.2fs, published %d, acked %d, failed %d, unknown %d: %.0f msgs/s\n",
		rep.PublishSeconds, rep.Published, rep.Acked, rep.Failed, rep.Unknown, rep.PublishRate)
	fmt.Fprintf(&b, "deliver:  delivered %d, unique %d, redelivered %d, suppressed %d, foreign %d: %.0f msgs/s\n",
		rep.Delivered, rep.Unique, rep.Redelivered, rep.Suppressed, rep.Foreign, rep.DeliverRate)
	fmt.Fprintf(&b, "latency (ms)        p50      p90      p99      max\n")
	for _, l := range []struct {
		name string
		l    hist.Summary
	}{{"publish→ack", rep.AckLatency}, {"publish→delivery", rep.DeliverLatency}} {
		fmt.Fprintf(&b, "  %-16s %8.3f %8.3f %8.3f %8.3f\n", l.name, l.l.P50, l.l.P90, l.l.P99, l.l.Max)
	}
	if rep.Reconnects+rep.Violations+rep.SessionsLost+rep.HeldAtEnd > 0 {
		fmt.Fprintf(&b, "clients:  reconnects %d, sessions lost %d, protocol violations %d, QoS 2 held at end %d\n",
			rep.Reconnects, rep.SessionsLost, rep.Violations, rep.HeldAtEnd)
	}
	if c.Retain {
		fmt.Fprintf(&b, "retained: late subscriber got %d of %d topics\n", rep.RetainedGot, rep.RetainedWant)
	}
	if r := rep.Replay; r != nil {
		fmt.Fprintf(&b, "replay:   queued %d per subscriber, delivered %d, first after %.1f ms, drained in %.2fs: %.0f msgs/s (%.0f per subscriber), complete %v\n",
			r.Queued, r.Delivered, r.FirstMs, r.DrainSeconds, r.MsgsPerSec, r.PerSubscriber, r.Complete)
	}
	if ch := rep.Check; ch != nil {
		verdict := "OK"
		if !ch.OK {
			verdict = "FAILED"
		}
		fmt.Fprintf(&b, "check:    %s: %s\n", verdict, ch.Summary)
	}
	if rep.Interrupted {
		b.WriteString("interrupted\n")
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", rep.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
