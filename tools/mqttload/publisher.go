package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/integration/checker"
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
	buf    []byte
}

// run publishes count messages (0: no limit) until issue is done, then
// returns. ctx bounds everything, including the wait for the last ack.
func (p *publisher) run(ctx, issue context.Context, count int) {
	cfg := &p.r.cfg
	st := &p.r.stats
	c, err := p.connect(ctx, issue)
	if err != nil {
		return
	}
	defer func() { c.close() }()
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
		if issue.Err() != nil {
			return
		}
		topic := p.topics[int(seq-1)%len(p.topics)]
		sent := time.Now()
		p.buf = encodePayload(p.buf[:0], header{PubIndex: uint32(p.idx), Publisher: p.name, Seq: seq, Sent: sent}, cfg.Payload)
		p.r.rec.add(checker.Event{Kind: checker.Invoke, Publisher: p.name, Topic: topic, Seq: seq, QoS: cfg.QoS, Retain: cfg.Retain})
		st.published.Add(1)
		pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		out, err := c.publish(pctx, topic, p.buf)
		cancel()
		ev := checker.Event{Publisher: p.name, Topic: topic, Seq: seq}
		switch {
		case out == acked && cfg.QoS == 0:
			// QoS 0 has no acknowledgement: the outcome stays open.
		case out == acked:
			st.acked.Add(1)
			st.ackLat.record(time.Since(sent))
			ev.Kind = checker.Ack
			p.r.noteAcked(topic)
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
		if out == unknown && isDone(c.done()) {
			p.r.rec.add(checker.Event{Kind: checker.Disconnect, Publisher: p.name, Err: err.Error()})
			c.close()
			if c, err = p.connect(ctx, issue); err != nil {
				c = nopPub{}
				return
			}
		}
	}
}

// connect dials until it succeeds or issue is done.
func (p *publisher) connect(ctx, issue context.Context) (pubConn, error) {
	backoff := 100 * time.Millisecond
	for {
		c, err := p.r.dialPub(ctx, p.name)
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
