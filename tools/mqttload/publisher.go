package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/internal/checker"
	"github.com/stratamq/strata/internal/mqttrec"
)

// outcome is how a publish ended.
type outcome int

const (
	acked   outcome = iota // PUBACK or PUBCOMP with success (or a QoS 0 write)
	refused                // a failure reason code: definitely not accepted
	unknown                // no answer: it may or may not have been accepted
)

// pubConn is one publisher connection, whichever the client library.
type pubConn interface {
	publish(ctx context.Context, topic string, payload []byte) (outcome, error)
	// done is closed when the connection is gone.
	done() <-chan struct{}
	close()
}

// dialPub connects publisher name and records the CONNACK.
func (r *runner) dialPub(ctx context.Context, name string) (pubConn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var (
		c              pubConn
		sessionPresent bool
		err            error
	)
	if r.cfg.PubClient == pubPaho {
		c, sessionPresent, err = dialPaho(ctx, &r.cfg, name)
	} else {
		c, sessionPresent, err = dialRec(ctx, &r.cfg, name)
	}
	if err != nil {
		return nil, err
	}
	r.rec.add(checker.Event{Kind: checker.Connack, Publisher: name, Clean: true, SessionPresent: sessionPresent})
	return c, nil
}

// pahoPub publishes with paho.golang (MQTT 5.0).
type pahoPub struct {
	c      *paho.Client
	qos    byte
	retain bool
}

func dialPaho(ctx context.Context, cfg *Config, name string) (*pahoPub, bool, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, false, err
	}
	c := paho.NewClient(paho.ClientConfig{
		ClientID:      name,
		Conn:          nc,
		PacketTimeout: cfg.Timeout,
		// paho calls these on goroutines of its own that end at once; the
		// connection's end is seen through Done.
		OnClientError:      func(error) {},
		OnServerDisconnect: func(*paho.Disconnect) {},
	})
	cp := &paho.Connect{ClientID: name, CleanStart: true, KeepAlive: uint16(cfg.KeepAlive)}
	if cfg.Username != "" {
		cp.Username, cp.UsernameFlag = cfg.Username, true
	}
	if cfg.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(cfg.Password), true
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, false, fmt.Errorf("connect %s: %w", name, err)
	}
	return &pahoPub{c: c, qos: byte(cfg.QoS), retain: cfg.Retain}, ca.SessionPresent, nil
}

func (p *pahoPub) publish(ctx context.Context, topic string, payload []byte) (outcome, error) {
	pr, err := p.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: p.qos, Retain: p.retain, Payload: payload})
	// paho returns a QoS 2 PUBREC with a failure code without an error.
	if pr != nil && pr.ReasonCode >= 0x80 {
		return refused, fmt.Errorf("reason code %#02x", pr.ReasonCode)
	}
	if err != nil {
		return unknown, err
	}
	return acked, nil
}

func (p *pahoPub) done() <-chan struct{} { return p.c.Done() }

func (p *pahoPub) close() {
	_ = p.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	<-p.c.Done()
}

// recPub publishes with internal/mqttrec (MQTT 3.1.1 or 5.0).
type recPub struct {
	c      *mqttrec.Conn
	qos    byte
	retain bool
}

func recOptions(cfg *Config, name string, clean bool) mqttrec.Options {
	o := mqttrec.Options{Version: packet.V5, ClientID: name, CleanStart: clean, KeepAlive: uint16(cfg.KeepAlive),
		Username: cfg.Username}
	if cfg.MQTT == 3 {
		o.Version = packet.V311
	}
	if cfg.Password != "" {
		o.Password = []byte(cfg.Password)
	}
	return o
}

func dialRec(ctx context.Context, cfg *Config, name string) (*recPub, bool, error) {
	c, ack, err := mqttrec.Connect(ctx, cfg.Addr, mqttrec.NewSession(mqttrec.SessionOptions{NoLog: true}), recOptions(cfg, name, true))
	if err != nil {
		return nil, false, fmt.Errorf("connect %s: %w", name, err)
	}
	return &recPub{c: c, qos: byte(cfg.QoS), retain: cfg.Retain}, ack.SessionPresent, nil
}

func (p *recPub) publish(ctx context.Context, topic string, payload []byte) (outcome, error) {
	_, err := p.c.Publish(ctx, &packet.Publish{Topic: topic, QoS: p.qos, Retain: p.retain, Payload: payload})
	switch {
	case err == nil:
		return acked, nil
	case errors.Is(err, mqttrec.ErrRefused):
		return refused, err
	default:
		return unknown, err
	}
}

func (p *recPub) done() <-chan struct{} { return p.c.Done() }

func (p *recPub) close() { _ = p.c.Disconnect(nil) }

// publisher is one publishing client and its sequence.
type publisher struct {
	r      *runner
	idx    int
	name   string
	topics []string
}

// run publishes count messages (0: no limit) until issue is done, then
// waits for the messages still in flight and returns. ctx bounds
// everything, including the wait for the last acks.
//
// Up to --inflight messages are in flight at once, but never two on one
// topic: message k goes out only when the previous message on its topic has
// ended, so each topic's messages reach the server in sequence order (which
// MQTT's ordering and the checker's per-topic order rely on), whichever
// goroutine's write reaches the socket first. With --inflight 1 every
// publish runs here, one at a time.
func (p *publisher) run(ctx, issue context.Context, count int) {
	cfg := &p.r.cfg
	c, err := p.connect(ctx, issue)
	if err != nil {
		return
	}
	w := newWindow(cfg.Inflight, len(p.topics))
	defer func() {
		w.wait()
		c.close()
	}()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	next := time.Now()
	for seq := uint64(1); count == 0 || seq <= uint64(count); seq++ {
		if interval > 0 {
			if !waitUntil(issue, next) {
				return
			}
			// After a stall, do not burst to catch up.
			next = maxTime(next.Add(interval), time.Now().Add(-time.Second))
		}
		ti := int(seq-1) % len(p.topics)
		sl, ok := w.acquire(issue, ti)
		if !ok {
			return
		}
		if isDone(c.done()) {
			// The connection is gone (a publish in flight saw it end): let
			// the others end too, then reconnect.
			w.release(sl, sl.buf)
			w.wait()
			p.r.rec.add(checker.Event{Kind: checker.Disconnect, Publisher: p.name, Err: "connection lost"})
			c.close()
			if c, err = p.connect(ctx, issue); err != nil {
				c = nopPub{}
				return
			}
			if sl, ok = w.acquire(issue, ti); !ok {
				return
			}
		}
		m := flight{topic: p.topics[ti], seq: seq, sent: time.Now()}
		m.payload = encodePayload(sl.buf[:0], header{PubIndex: uint32(p.idx), Publisher: p.name, Seq: seq, Sent: m.sent}, cfg.Payload)
		p.r.rec.add(checker.Event{Kind: checker.Invoke, Publisher: p.name, Topic: m.topic, Seq: seq, QoS: cfg.QoS, Retain: cfg.Retain})
		p.r.stats.published.Add(1)
		if w.n == 1 {
			p.publish(ctx, c, m)
			w.release(sl, m.payload)
			continue
		}
		conn := c
		w.start(func() {
			p.publish(ctx, conn, m)
			w.release(sl, m.payload)
		})
	}
}

// flight is one message on its way.
type flight struct {
	topic   string
	seq     uint64
	sent    time.Time
	payload []byte
}

// publish sends m on c, waits for its outcome and records it.
func (p *publisher) publish(ctx context.Context, c pubConn, m flight) {
	cfg := &p.r.cfg
	st := &p.r.stats
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	out, err := c.publish(pctx, m.topic, m.payload)
	cancel()
	ev := checker.Event{Publisher: p.name, Topic: m.topic, Seq: m.seq}
	switch {
	case out == acked && cfg.QoS == 0:
		// QoS 0 has no acknowledgement: the outcome stays open.
	case out == acked:
		st.acked.Add(1)
		st.ackLat.Record(time.Since(m.sent))
		ev.Kind = checker.Ack
		p.r.noteAcked(m.topic)
	case out == refused:
		st.failed.Add(1)
		ev.Kind, ev.Err = checker.Fail, err.Error()
	default:
		st.unknown.Add(1)
		ev.Kind, ev.Err = checker.Unknown, err.Error()
	}
	if ev.Kind != "" {
		p.r.rec.add(ev)
	}
}

// window is a publisher's in-flight limit: n slots, each with its own
// payload buffer (a client may read a payload until its publish returns),
// and at most one message in flight per topic. The issuing goroutine calls
// acquire, start and wait; release is called once per acquired slot, from
// whichever goroutine ran the publish.
type window struct {
	n     int
	slots chan []byte
	// busy[t] is closed when the message in flight on topic t ends. Only
	// the issuing goroutine reads and writes the slice.
	busy []chan struct{}
	wg   sync.WaitGroup
}

// slot is an acquired place in the window.
type slot struct {
	buf  []byte
	done chan struct{}
}

func newWindow(n, topics int) *window {
	n = max(1, min(n, topics))
	w := &window{n: n, slots: make(chan []byte, n), busy: make([]chan struct{}, topics)}
	for range n {
		w.slots <- nil
	}
	return w
}

// acquire waits until topic t has nothing in flight and a slot is free;
// false when issue ended first.
func (w *window) acquire(issue context.Context, t int) (slot, bool) {
	if issue.Err() != nil {
		return slot{}, false
	}
	if ch := w.busy[t]; ch != nil {
		select {
		case <-ch:
		case <-issue.Done():
			return slot{}, false
		}
	}
	select {
	case buf := <-w.slots:
		s := slot{buf: buf, done: make(chan struct{})}
		w.busy[t] = s.done
		return s, true
	case <-issue.Done():
		return slot{}, false
	}
}

// release ends s: its topic is free again and its buffer (buf, the slot's
// buffer as the payload left it) goes back to the pool.
func (w *window) release(s slot, buf []byte) {
	close(s.done)
	w.slots <- buf
}

// start runs f on a goroutine of its own that wait waits for.
func (w *window) start(f func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
	}()
}

// wait waits for every publish started with start.
func (w *window) wait() { w.wg.Wait() }

// connect dials until it succeeds or issue is done.
func (p *publisher) connect(ctx, issue context.Context) (pubConn, error) {
	backoff := 100 * time.Millisecond
	for {
		dial := p.r.dialPub
		if p.r.testDialPub != nil {
			dial = p.r.testDialPub
		}
		c, err := dial(ctx, p.name)
		if err == nil {
			return c, nil
		}
		p.r.logf("publisher %s: %v", p.name, err)
		if !waitUntil(issue, time.Now().Add(backoff)) {
			return nil, err
		}
		p.r.stats.reconnects.Add(1)
		backoff = min(2*backoff, time.Second)
	}
}

// nopPub stands for a connection that could not be made, so the deferred
// close has something to close.
type nopPub struct{}

func (nopPub) publish(context.Context, string, []byte) (outcome, error) {
	return unknown, errors.New("not connected")
}
func (nopPub) done() <-chan struct{} { return nil }
func (nopPub) close()                {}

// waitUntil waits until t; false means ctx ended first.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
