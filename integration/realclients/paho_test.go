package realclients

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/eclipse/paho.golang/paho"
)

// pahoDriver runs paho.golang (MQTT 5 only) in the test process.
type pahoDriver struct {
	b  *broker
	mu sync.Mutex
	c  map[string]*paho.Client
	// got are the messages of each slot in arrival order (paho acknowledges
	// each after the handler returns).
	got map[string][]message
}

func newPahoDriver(b *broker) *pahoDriver {
	return &pahoDriver{b: b, c: map[string]*paho.Client{}, got: map[string][]message{}}
}

func (p *pahoDriver) client(slot string) (*paho.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.c[slot]
	if !ok {
		return nil, errors.New("no client " + slot)
	}
	return c, nil
}

func (p *pahoDriver) connect(ctx context.Context, slot string, o connOpts) (connack, error) {
	if o.version != 5 {
		return connack{}, errors.New("paho.golang speaks only MQTT 5")
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.b.tcp)
	if err != nil {
		return connack{}, err
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			m := pr.Packet
			p.mu.Lock()
			p.got[slot] = append(p.got[slot], message{Topic: m.Topic, Payload: string(m.Payload), QoS: int(m.QoS), Dup: m.Duplicate(), Retain: m.Retain})
			p.mu.Unlock()
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: o.clientID, CleanStart: o.clean, KeepAlive: 30, Properties: &paho.ConnectProperties{}}
	if o.expiry > 0 {
		e := o.expiry
		cp.Properties.SessionExpiryInterval = &e
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return connack{}, err
	}
	p.mu.Lock()
	p.c[slot] = c
	p.mu.Unlock()
	return connack{sessionPresent: ack.SessionPresent, known: true, reason: int(ack.ReasonCode)}, nil
}

func (p *pahoDriver) subscribe(ctx context.Context, slot, filter string, qos int) ([]int, error) {
	c, err := p.client(slot)
	if err != nil {
		return nil, err
	}
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: byte(qos)}}})
	if sa == nil {
		return nil, err
	}
	// A refusal is an answer (its reason code): paho also returns an error.
	codes := make([]int, len(sa.Reasons))
	for i, r := range sa.Reasons {
		codes[i] = int(r)
	}
	return codes, nil
}

func (p *pahoDriver) publish(ctx context.Context, slot, topic string, payloads []string, qos int) error {
	c, err := p.client(slot)
	if err != nil {
		return err
	}
	for _, pl := range payloads {
		if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: byte(qos), Payload: []byte(pl)}); err != nil {
			return err
		}
	}
	return nil
}

func (p *pahoDriver) disconnect(ctx context.Context, slot string) error {
	c, err := p.client(slot)
	if err != nil {
		return err
	}
	p.mu.Lock()
	delete(p.c, slot)
	p.mu.Unlock()
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		return err
	}
	select {
	case <-c.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pahoDriver) messages(slot string) []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]message(nil), p.got[slot]...)
}

func (p *pahoDriver) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.c {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return nil
}
