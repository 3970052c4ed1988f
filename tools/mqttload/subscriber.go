package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/mqttrec"
)

// maxSeq bounds the sequence numbers a subscriber keeps a bit for, so a
// corrupt payload cannot make it allocate without bound.
const maxSeq = 1 << 32

// subscriber is one subscribing client. It records every message through
// mqttrec, which applies the QoS 2 receiver rules itself.
type subscriber struct {
	r    *runner
	name string
	sess *mqttrec.Session
	// late marks the reader that subscribes after publishing to check
	// retained values; it is not one of the readers that must receive
	// every message.
	late bool

	// conn is the current connection, owned by whoever runs the
	// subscriber (run, or the queued-mode steps).
	conn      *mqttrec.Conn
	connected bool

	// seen has a bit per (publisher index, sequence) received, touched
	// only from the connection's reader goroutine (connections of a
	// Session follow one another, each closed before the next opens).
	seen     [][]uint64
	unique   atomic.Int64
	online   atomic.Bool
	first    atomic.Int64 // Unix ns of the first first-delivery
	last     atomic.Int64 // Unix ns of the latest first-delivery
	retained atomic.Int64 // retained messages received (the late reader)
}

func (r *runner) newSubscriber(name string, late bool) *subscriber {
	s := &subscriber{r: r, name: name, late: late}
	s.sess = mqttrec.NewSession(mqttrec.SessionOptions{NoLog: true, OnMessage: s.onMessage, OnViolation: s.onViolation})
	return s
}

func (s *subscriber) onViolation(v mqttrec.Violation) {
	s.r.stats.violations.Add(1)
	s.r.rec.add(checker.Event{Kind: checker.Violation, Reader: s.name, Err: v.String()})
	s.r.logf("subscriber %s: protocol violation: %v", s.name, v)
}

// onMessage runs on the connection's reader goroutine for every PUBLISH.
func (s *subscriber) onMessage(m mqttrec.Message) {
	st := &s.r.stats
	ev := checker.Event{Kind: checker.Deliver, Reader: s.name, Topic: m.Topic, QoS: int(m.QoS), Dup: m.Dup, Retain: m.Retain}
	h, err := decodePayload(m.Payload)
	if err != nil {
		// Not ours at all: the checker reports it as unexpected.
		ev.Publisher = "?"
		st.delivered.Add(1)
		s.r.rec.add(ev)
		return
	}
	ev.Publisher, ev.Seq = h.Publisher, h.Seq
	if !strings.HasPrefix(h.Publisher, s.r.cfg.ClientPrefix) {
		// Another run's message: a retained one is left over from it and
		// skipped; anything else is recorded, and unexpected.
		st.foreign.Add(1)
		if !m.Retain {
			s.r.rec.add(ev)
		}
		return
	}
	if !m.Delivered {
		st.suppressed.Add(1)
		ev.Kind = checker.Suppress
		s.r.rec.add(ev)
		return
	}
	st.delivered.Add(1)
	s.r.rec.add(ev)
	if m.Retain && s.late {
		s.retained.Add(1)
		return
	}
	if m.Retain {
		return // sent for a resubscription: judged by the retained verdict only
	}
	if !s.mark(h.PubIndex, h.Seq) {
		st.redelivers.Add(1)
		return
	}
	s.unique.Add(1)
	st.unique.Add(1)
	st.e2eLat.Record(m.Time.Sub(h.Sent))
	ns := m.Time.UnixNano()
	s.first.CompareAndSwap(0, ns)
	s.last.Store(ns)
	st.noteDeliver(m.Time)
}

// mark sets the bit of a message and reports whether it was clear. Out of
// range messages count as new.
func (s *subscriber) mark(pub uint32, seq uint64) bool {
	if int(pub) >= s.r.cfg.Publishers || seq >= maxSeq {
		return true
	}
	for len(s.seen) <= int(pub) {
		s.seen = append(s.seen, nil)
	}
	w := s.seen[pub]
	i := seq / 64
	for uint64(len(w)) <= i {
		w = append(w, 0)
	}
	s.seen[pub] = w
	bit := uint64(1) << (seq % 64)
	if w[i]&bit != 0 {
		return false
	}
	w[i] |= bit
	return true
}

// connect opens a connection to addr. Durable subscribers start clean once
// and resume their session afterwards; others always start clean. It
// subscribes when the server has no session for it.
func (s *subscriber) connect(ctx context.Context, addr string) error {
	cfg := &s.r.cfg
	// MQTT 5.0 starts a durable session clean (Clean Start 1 with a
	// Session Expiry Interval keeps it); in 3.1.1 Clean Session 1 would end
	// the session with the connection [MQTT-3.1.2-6], so a durable
	// subscriber never sets it.
	clean := !cfg.Durable || s.late || (!s.connected && cfg.MQTT == 5)
	opts := recOptions(cfg, s.name, clean)
	if cfg.Durable && cfg.MQTT == 5 && !s.late {
		opts.SessionExpiry = cfg.SessionExpiry
	}
	if cfg.MQTT == 5 {
		opts.ReceiveMaximum = uint16(cfg.SubReceiveMax)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c, ack, err := mqttrec.Connect(cctx, addr, s.sess, opts)
	if err != nil {
		return fmt.Errorf("subscriber %s: %w", s.name, err)
	}
	s.r.rec.add(checker.Event{Kind: checker.Connack, Reader: s.name, Clean: clean, SessionPresent: ack.SessionPresent})
	if !clean && !ack.SessionPresent && s.connected {
		s.r.stats.sessionsLost.Add(1)
		s.r.logf("subscriber %s: session lost (Session Present 0 on a durable reconnect)", s.name)
	}
	s.connected = true
	if clean || !ack.SessionPresent {
		s.r.rec.add(checker.Event{Kind: checker.Subscribe, Reader: s.name, Topic: cfg.Filter, QoS: cfg.SubQoS})
		codes, err := c.Subscribe(cctx, 0, packet.Subscription{Filter: cfg.Filter, QoS: byte(cfg.SubQoS)})
		if err == nil && (len(codes) != 1 || codes[0] >= 0x80) {
			err = fmt.Errorf("SUBACK %v", codes)
		}
		if err != nil {
			c.Close()
			return fmt.Errorf("subscriber %s: subscribe %q: %w", s.name, cfg.Filter, err)
		}
	}
	s.conn = c
	s.online.Store(true)
	return nil
}

// reconnect connects until it succeeds or ctx ends.
func (s *subscriber) reconnect(ctx context.Context, addr string) bool {
	backoff := 100 * time.Millisecond
	for {
		s.r.stats.reconnects.Add(1)
		err := s.connect(ctx, addr)
		if err == nil {
			return true
		}
		s.r.logf("%v", err)
		if !waitUntil(ctx, time.Now().Add(backoff)) {
			return false
		}
		backoff = min(2*backoff, time.Second)
	}
}

// drop ends the connection, gracefully or as a crash would, and records it.
// final marks the run's end, when a durable MQTT 5.0 session is let go.
func (s *subscriber) drop(graceful, final bool, why string) {
	if s.conn == nil {
		return
	}
	s.online.Store(false)
	if final {
		s.r.stats.heldAtEnd.Add(int64(len(s.sess.Held())))
	}
	if graceful {
		d := &packet.Disconnect{}
		if final && s.r.cfg.MQTT == 5 && s.r.cfg.Durable {
			// The run is over: let the server drop the session.
			d.Properties.Present.Add(packet.PropSessionExpiryInterval)
		}
		_ = s.conn.Disconnect(d)
		if final && s.r.cfg.MQTT == 3 && s.r.cfg.Durable {
			s.forget()
		}
	} else {
		_ = s.conn.Close()
	}
	s.r.rec.add(checker.Event{Kind: checker.Disconnect, Reader: s.name, Err: why})
	s.conn = nil
}

// forget ends a 3.1.1 durable session at the end of the run, by connecting
// once with Clean Session 1. It is not recorded: the run is over.
func (s *subscriber) forget() {
	ctx, cancel := context.WithTimeout(context.Background(), s.r.cfg.Timeout)
	defer cancel()
	c, _, err := mqttrec.Connect(ctx, s.r.cfg.Addr, mqttrec.NewSession(mqttrec.SessionOptions{NoLog: true}), recOptions(&s.r.cfg, s.name, true))
	if err == nil {
		_ = c.Disconnect(nil)
	}
}

// run keeps the subscriber connected until ctx ends: it reconnects after a
// lost connection, and goes offline once when offline fires.
func (s *subscriber) run(ctx context.Context, offline <-chan struct{}) {
	cfg := &s.r.cfg
	addr2 := cfg.Addr
	if cfg.SubAddr2 != "" {
		addr2 = cfg.SubAddr2
	}
	for {
		if s.conn == nil {
			if !s.reconnect(ctx, addr2) {
				return
			}
		}
		select {
		case <-ctx.Done():
			s.drop(true, true, "end of run")
			return
		case <-s.conn.Done():
			err := s.conn.Err()
			s.online.Store(false)
			s.r.rec.add(checker.Event{Kind: checker.Disconnect, Reader: s.name, Err: errString(err)})
			s.r.logf("subscriber %s: connection lost: %v", s.name, err)
			_ = s.conn.Close()
			s.conn = nil
		case <-offline:
			offline = nil
			s.r.rec.add(checker.Event{Kind: checker.Fault, Reader: s.name, Err: fmt.Sprintf("offline for %v", cfg.SubOfflineFor)})
			s.drop(false, false, "offline (connection dropped without DISCONNECT)")
			if !waitUntil(ctx, time.Now().Add(cfg.SubOfflineFor)) {
				return
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, mqttrec.ErrClosed) {
		return "closed"
	}
	return err.Error()
}
