package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// The devices use a minimal MQTT 5 client on a net.Conn with the
// repository's codec: a device is a socket, and an idle one holds no
// goroutine and no buffer, so the client side of 100,000 sessions fits in a
// few hundred MiB.

// maxPacket bounds what a device reads.
const maxPacket = 64 << 10

// opTimeout bounds one device's exchange (connect, subscribe, receive).
const opTimeout = 30 * time.Second

func clientID(i int) string { return "dev-" + strconv.Itoa(i) }
func topic(i int) string    { return "devices/" + strconv.Itoa(i) + "/cmd" }
func payload(i int) []byte  { return []byte("cmd for dev-" + strconv.Itoa(i)) }

// errRefused is a CONNACK that refused the session for now (the gateway
// is not registered yet, or the session is still held by the killed
// gateway's epoch); the device tries again.
var errRefused = errors.New("fleetbench: connection refused for now")

// fleet is the set of device connections.
type fleet struct {
	addr    string
	n       int
	expiry  uint32
	dialers []net.Dialer
	dials   int
	conns   []net.Conn // by device; nil when not connected
	retries atomic.Int64
}

func newFleet(addr string, n, sources, dials int, expiry time.Duration) *fleet {
	f := &fleet{addr: addr, n: n, expiry: uint32(expiry / time.Second), dials: dials, conns: make([]net.Conn, n)}
	for i := range sources {
		f.dialers = append(f.dialers, net.Dialer{Timeout: opTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}})
	}
	return f
}

// each runs do for every device, at most f.dials at a time, retrying a
// device whose do returns errRefused (with a growing pause) until ctx ends.
// It returns the first other error, after every started do has returned.
func (f *fleet) each(ctx context.Context, do func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range f.dials {
		wg.Go(func() {
			for i := range next {
				pause := 10 * time.Millisecond
				for {
					err := do(ctx, i)
					if err == nil {
						break
					}
					if !errors.Is(err, errRefused) || ctx.Err() != nil {
						cancel(fmt.Errorf("%s: %w", clientID(i), err))
						break
					}
					f.retries.Add(1)
					if !pauseCtx(ctx, pause) {
						break
					}
					pause = min(2*pause, time.Second)
				}
			}
		})
	}
feed:
	for i := range f.n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// pauseCtx waits d or until ctx ends; it reports whether d passed.
func pauseCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// connect dials device i and exchanges CONNECT (Clean Start 0) and
// CONNACK; it returns the connection with its deadline set, a reader, and
// Session Present.
func (f *fleet) connect(ctx context.Context, i int) (net.Conn, *bufio.Reader, bool, error) {
	nc, err := f.dialers[i%len(f.dialers)].DialContext(ctx, "tcp", f.addr)
	if err != nil {
		return nil, nil, false, fmt.Errorf("dial: %w", err)
	}
	_ = nc.SetDeadline(time.Now().Add(opTimeout))
	c := &packet.Connect{Version: packet.V5, ClientID: clientID(i)}
	c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	c.Properties.SessionExpiryInterval = f.expiry
	r := bufio.NewReaderSize(nc, 512)
	present, err := exchangeConnect(nc, r, c)
	if err != nil {
		nc.Close()
		return nil, nil, false, err
	}
	return nc, r, present, nil
}

// exchangeConnect sends c and reads the CONNACK.
func exchangeConnect(nc net.Conn, r *bufio.Reader, c *packet.Connect) (present bool, err error) {
	if err := writePacket(nc, c); err != nil {
		return false, err
	}
	p, err := packet.ReadPacket(r, packet.V5, maxPacket)
	if err != nil {
		// A gateway that restarts closes what it cannot serve yet.
		return false, fmt.Errorf("%w: reading CONNACK: %v", errRefused, err) // lint:nowrap the read error is detail; the class is errRefused
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		return false, fmt.Errorf("got %s, want CONNACK", p.Type())
	}
	switch ack.ReasonCode {
	case packet.Success:
		return ack.SessionPresent, nil
	case packet.ServerUnavailable, packet.ServerBusy, packet.QuotaExceeded, packet.ConnectionRateExceeded:
		return false, fmt.Errorf("%w: CONNACK %v", errRefused, ack.ReasonCode)
	default:
		return false, fmt.Errorf("CONNACK %v", ack.ReasonCode)
	}
}

func writePacket(nc net.Conn, p packet.Packet) error {
	b, err := p.Append(nil, packet.V5)
	if err != nil {
		return fmt.Errorf("encode %s: %w", p.Type(), err)
	}
	if _, err := nc.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", p.Type(), err)
	}
	return nil
}

// openAll connects and subscribes every device and keeps its connection
// idle (no deadline, nothing read).
func (f *fleet) openAll(ctx context.Context) error {
	return f.each(ctx, func(ctx context.Context, i int) error {
		nc, r, _, err := f.connect(ctx, i)
		if err != nil {
			return err
		}
		sub := &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic(i), QoS: 1}}}
		if err := writePacket(nc, sub); err != nil {
			nc.Close()
			return err
		}
		p, err := packet.ReadPacket(r, packet.V5, maxPacket)
		if err != nil {
			nc.Close()
			return fmt.Errorf("reading SUBACK: %w", err)
		}
		if d, ok := p.(*packet.Disconnect); ok {
			nc.Close()
			return fmt.Errorf("DISCONNECT %v (%s) instead of SUBACK", d.ReasonCode, d.Properties.ReasonString)
		}
		ack, ok := p.(*packet.Suback)
		if !ok || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != packet.GrantedQoS1 {
			nc.Close()
			return fmt.Errorf("%s %+v, want a SUBACK with one GrantedQoS1", p.Type(), p)
		}
		_ = nc.SetDeadline(time.Time{})
		f.conns[i] = nc
		return nil
	})
}

// closeAll closes every device connection.
func (f *fleet) closeAll() {
	for i, nc := range f.conns {
		if nc != nil {
			nc.Close()
			f.conns[i] = nil
		}
	}
}

// reconnectResult is what the reconnect round saw.
type reconnectResult struct {
	connected, present, received atomic.Int64
	connectedAt, receivedAt      atomic.Int64 // Unix ns of the last CONNACK, of the last message
	// connackNs and messageNs sum, over the devices, dial to CONNACK and
	// CONNACK to the message.
	connackNs, messageNs atomic.Int64
}

// reconnectAll reconnects every device (Clean Start 0), expects Session
// Present and its message on its topic, acknowledges it and keeps the
// connection. A device whose message does not come within opTimeout counts
// as lost, not as an error.
func (f *fleet) reconnectAll(ctx context.Context, res *reconnectResult) error {
	return f.each(ctx, func(ctx context.Context, i int) error {
		start := time.Now()
		nc, r, present, err := f.connect(ctx, i)
		if err != nil {
			return err
		}
		f.conns[i] = nc
		acked := time.Now()
		res.connected.Add(1)
		res.connectedAt.Store(acked.UnixNano())
		res.connackNs.Add(int64(acked.Sub(start)))
		if present {
			res.present.Add(1)
		}
		for {
			p, err := packet.ReadPacket(r, packet.V5, maxPacket)
			if err != nil {
				return nil // lost: counted by the caller
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				continue
			}
			if pub.QoS > 0 {
				if err := writePacket(nc, &packet.Puback{PacketID: pub.PacketID}); err != nil {
					return nil
				}
			}
			if pub.Topic == topic(i) && string(pub.Payload) == string(payload(i)) {
				now := time.Now()
				res.received.Add(1)
				res.receivedAt.Store(now.UnixNano())
				res.messageNs.Add(int64(now.Sub(acked)))
				_ = nc.SetDeadline(time.Time{})
				return nil
			}
		}
	})
}

// publishAll publishes one QoS 1 message to each device's topic from one
// clean-start client, with up to window messages unacknowledged; it
// returns when every PUBACK is in.
func publishAll(ctx context.Context, addr string, n, window int) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	r := bufio.NewReader(nc)
	if _, err := exchangeConnect(nc, r, &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "fleetbench-pub"}); err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	credit := make(chan struct{}, window)
	readErr := make(chan error, 1)
	go func() {
		for acked := 0; acked < n; {
			p, err := packet.ReadPacket(r, packet.V5, maxPacket)
			if err != nil {
				readErr <- fmt.Errorf("publisher: %w", err)
				return
			}
			if ack, ok := p.(*packet.Puback); ok {
				if ack.ReasonCode >= 0x80 {
					readErr <- fmt.Errorf("publisher: PUBACK %v", ack.ReasonCode)
					return
				}
				acked++
				<-credit
			}
		}
		readErr <- nil
	}()
	bw := bufio.NewWriter(nc)
	for i := range n {
		select {
		case credit <- struct{}{}:
		case err := <-readErr:
			return err
		}
		b, err := (&packet.Publish{QoS: 1, PacketID: uint16(i%65535 + 1), Topic: topic(i), Payload: payload(i)}).Append(nil, packet.V5)
		if err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		if len(credit) == cap(credit) || i == n-1 {
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("publisher: %w", err)
			}
		}
	}
	return <-readErr
}
