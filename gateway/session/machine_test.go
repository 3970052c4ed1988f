package session

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/lts"
)

// TestMachine runs the scripts in testdata/. Each command feeds one event at
// the script's clock and prints the actions, then the deadline relative to
// the start ("deadline: +15s").
//
//	new [server_keepalive=N] [max_keepalive=N] [backoff=F] [max_expiry=N]
//	    [max_qos=N] [retain] [shared] [subid] [no_wildcard] [receive_max=N] [stores=N]
//	    [batch=N] [ring=N] [window=N] [record_delay=D] [not_durable] [keep_store]
//	    [deny_disconnect]
//	    [max_releases=N] [alias_out=N] [sys_retained]
//	    (sys_retained: the gateway's latest $SYS messages are
//	    $SYS/broker/uptime "10" and $SYS/broker/version "strata")
//	connect [v=5|4|3] [id=X] [clean] [keepalive=N] [expiry=N] [user=U]
//	    [will=TOPIC] [will_qos=N] [will_retain] [auth_method=M]
//	    [receive_max=N] [max_packet=N] [alias_max=N]
//	connected [code=0xNN] [no_connack] [present] [guard=N] [deny=PREFIX]
//	    [auth_expires=N]  (the credentials expire N seconds after the start)
//	    (deny: topics and filters starting with PREFIX are denied; a
//	    filter with a wildcard is not whole, so its messages are checked)
//	    [held=N,N...] [no_state]   (the session's held QoS 2 ids; no_state:
//	    a backend that keeps no session state)
//	advance D                 (then Tick, as the driver does at the deadline)
//	ping | auth | kick | shutdown | lost
//	publish topic=T [qos=N] [id=N] [retain] [alias=N]
//	subscribe id=N [subid=N]   (body: "filter qos [nolocal] [rap] [rh=N]" per line)
//	unsubscribe id=N           (body: a filter per line)
//	local                      (body: "topic payload" per line: Machine.Local)
//	pubrec id=N | pubrel id=N
//	store-done [err=stale|quota|unavailable]
//	release-done id=N [not_held] [err=stale|quota|unavailable]
//	disconnect [rc=0xNN] [expiry=N]
//	malformed code=0xNN
//	unsupported level=N
func TestMachine(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var (
			m     *Machine
			start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			now   time.Time
			dx    = newDeliveryScript()
		)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			var acts []Action
			switch d.Cmd {
			case "new":
				cfg := DefaultConfig()
				n := 0
				cfg.NewClientID = func() string { n++; return fmt.Sprintf("auto-%d", n) }
				if d.HasArg("server_keepalive") {
					cfg.ServerKeepAlive, cfg.HasServerKeepAlive = uint16(intArg(t, d, "server_keepalive", 0)), true
				}
				cfg.MaxKeepAlive = uint16(intArg(t, d, "max_keepalive", 0))
				cfg.MaxSessionExpiry = uint32(intArg(t, d, "max_expiry", 0))
				cfg.MaxQoS = byte(intArg(t, d, "max_qos", 2))
				if d.HasArg("backoff") {
					b, err := strconv.ParseFloat(strArg(d, "backoff", ""), 64)
					if err != nil {
						t.Fatal(err)
					}
					cfg.KeepAliveBackoff = b
				}
				if d.HasArg("max_releases") {
					cfg.MaxInflightReleases = int(intArg(t, d, "max_releases", 0))
				}
				if d.HasArg("receive_max") {
					cfg.ReceiveMaximum = uint16(intArg(t, d, "receive_max", 0))
				}
				cfg.StoresInFlight = int(intArg(t, d, "stores", 0))
				cfg.MaxTopicAliasOutbound = uint16(intArg(t, d, "alias_out", 64))
				if d.HasArg("sys_retained") {
					cfg.LocalRetained = func(filter string) []LocalMessage {
						var out []LocalMessage
						for _, msg := range []LocalMessage{{"$SYS/broker/uptime", []byte("10")}, {"$SYS/broker/version", []byte("strata")}} {
							if lts.MatchTopic(filter, msg.Topic) {
								out = append(out, msg)
							}
						}
						return out
					}
				}
				cfg.RetainAvailable = d.HasArg("retain")
				cfg.SharedAvailable = d.HasArg("shared")
				cfg.SubscriptionIDAvailable = d.HasArg("subid")
				cfg.WildcardAvailable = !d.HasArg("no_wildcard")
				cfg.BatchSize = int(intArg(t, d, "batch", 100))
				cfg.OutboundWindow = int(intArg(t, d, "window", 256))
				cfg.BatchesPerStream = int(intArg(t, d, "ring", 1))
				cfg.RecordCommitDelay = 0 // a script commits records at once unless it says
				if d.HasArg("record_delay") {
					rd, err := time.ParseDuration(strArg(d, "record_delay", ""))
					if err != nil {
						t.Fatal(err)
					}
					cfg.RecordCommitDelay = rd
				}
				cfg.Durable = !d.HasArg("not_durable")
				cfg.DisconnectOnDeny = d.HasArg("deny_disconnect")
				now = start
				m = New(cfg, now)
				dx.reset(d.HasArg("keep_store"))
			case "connect":
				acts = m.Packet(now, connectPacket(t, d))
			case "connected":
				r := ConnectResult{
					Code:           packet.ReasonCode(intArg(t, d, "code", 0)),
					NoConnack:      d.HasArg("no_connack"),
					SessionPresent: d.HasArg("present"),
					Guard:          uint64(intArg(t, d, "guard", 1)),
				}
				if r.SessionPresent && !d.HasArg("no_state") {
					r.Session = dx.stored(r.Guard)
					for _, f := range strings.Split(strArg(d, "held", ""), ",") {
						if id, err := strconv.Atoi(f); err == nil {
							r.Session.HeldQos2Ids = append(r.Session.HeldQos2Ids, uint32(id))
						}
					}
				}
				if d.HasArg("auth_expires") {
					r.AuthExpires = start.Add(time.Duration(intArg(t, d, "auth_expires", 0)) * time.Second)
				}
				if d.HasArg("deny") {
					prefix := strArg(d, "deny", "")
					r.Authorize = func(a Access, topic string) bool {
						if a == AccessSubscribeWhole {
							// A filter with a wildcard may match a denied topic.
							return !strings.HasPrefix(topic, prefix) && !strings.ContainsAny(topic, "+#")
						}
						return !strings.HasPrefix(topic, prefix)
					}
				}
				acts = m.ConnectDone(now, r)
			case "advance":
				dur, err := time.ParseDuration(d.CmdArgs[0].Key)
				if err != nil {
					t.Fatal(err)
				}
				now = now.Add(dur)
				if dl, ok := m.Deadline(); ok && !now.Before(dl) {
					acts = m.Tick(now)
				}
			case "ping":
				acts = m.Packet(now, &packet.Pingreq{})
			case "auth":
				acts = m.Packet(now, &packet.Auth{ReasonCode: packet.ReAuthenticate})
			case "kick":
				acts = m.Kick(now)
			case "shutdown":
				acts = m.Shutdown(now)
			case "lease-lost":
				acts = m.LeaseLost(now)
			case "lost":
				acts = m.Lost(now, ReasonNetworkError)
			case "publish":
				p := &packet.Publish{
					Topic:    strArg(d, "topic", ""),
					QoS:      byte(intArg(t, d, "qos", 0)),
					PacketID: uint16(intArg(t, d, "id", 0)),
					Retain:   d.HasArg("retain"),
					Dup:      d.HasArg("dup"),
					Payload:  []byte("x"),
				}
				if d.HasArg("alias") {
					p.Properties.TopicAlias = uint16(intArg(t, d, "alias", 0))
					p.Properties.Present.Add(packet.PropTopicAlias)
				}
				acts = m.Packet(now, p)
			case "store-done":
				acts = m.StoreDone(now, storeErr(strArg(d, "err", "")))
			case "hold":
				acts = m.HoldStores(now, true)
			case "unhold":
				acts = m.HoldStores(now, false)
			case "release-done":
				acts = m.ReleaseDone(now, uint16(intArg(t, d, "id", 0)), !d.HasArg("not_held"), storeErr(strArg(d, "err", "")))
			case "subscribe":
				p := &packet.Subscribe{PacketID: uint16(intArg(t, d, "id", 0))}
				if d.HasArg("subid") {
					p.Properties.SubscriptionIdentifiers = []uint32{uint32(intArg(t, d, "subid", 0))}
				}
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					p.Subscriptions = append(p.Subscriptions, subscriptionLine(t, line))
				}
				acts = m.Packet(now, p)
			case "unsubscribe":
				p := &packet.Unsubscribe{PacketID: uint16(intArg(t, d, "id", 0))}
				p.Filters = strings.Fields(d.Input)
				acts = m.Packet(now, p)
			case "local":
				var msgs []LocalMessage
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					topic, payload, _ := strings.Cut(line, " ")
					msgs = append(msgs, LocalMessage{Topic: topic, Payload: []byte(payload)})
				}
				acts = m.Local(now, msgs)
			case "pubrec":
				acts = m.Packet(now, &packet.Pubrec{PacketID: uint16(intArg(t, d, "id", 0))})
			case "pubrel":
				acts = m.Packet(now, &packet.Pubrel{PacketID: uint16(intArg(t, d, "id", 0))})
			case "disconnect":
				p := &packet.Disconnect{ReasonCode: packet.ReasonCode(intArg(t, d, "rc", 0))}
				if d.HasArg("expiry") {
					p.Properties.SessionExpiryInterval = uint32(intArg(t, d, "expiry", 0))
					p.Properties.Present.Add(packet.PropSessionExpiryInterval)
				}
				acts = m.Packet(now, p)
			case "malformed":
				acts = m.Malformed(now, packet.ReasonCode(intArg(t, d, "code", 0x81)))
			case "unsupported":
				acts = m.UnsupportedProtocol(now, byte(intArg(t, d, "level", 0)))
			default:
				var ok bool
				if acts, ok = dx.run(t, d, m, now); !ok {
					d.Fatalf(t, "unknown command %q", d.Cmd)
				}
			}
			dx.observe(acts)
			var b strings.Builder
			for _, a := range acts {
				b.WriteString(formatAction(a))
				b.WriteByte('\n')
			}
			if dl, ok := m.Deadline(); ok {
				fmt.Fprintf(&b, "deadline: +%v\n", dl.Sub(start))
			} else {
				b.WriteString("deadline: none\n")
			}
			return b.String()
		})
	})
}

// subscriptionLine reads "filter qos [nolocal] [rap] [rh=N]".
func subscriptionLine(t *testing.T, line string) packet.Subscription {
	f := strings.Fields(line)
	qos, _ := strconv.Atoi(f[1])
	s := packet.Subscription{Filter: f[0], QoS: byte(qos)}
	for _, o := range f[2:] {
		switch k, v, _ := strings.Cut(o, "="); k {
		case "nolocal":
			s.NoLocal = true
		case "rap":
			s.RetainAsPublished = true
		case "rh":
			n, _ := strconv.Atoi(v)
			s.RetainHandling = byte(n)
		default:
			t.Fatalf("subscription option %q", o)
		}
	}
	return s
}

func storeErr(s string) error {
	switch s {
	case "stale":
		return ErrStaleGuard
	case "quota":
		return ErrQuotaExceeded
	case "unavailable":
		return ErrUnavailable
	}
	return nil
}

func strArg(d *datadriven.TestData, key, def string) string {
	if a, ok := d.Arg(key); ok && len(a.Vals) > 0 {
		return a.Vals[0]
	}
	return def
}

func intArg(t *testing.T, d *datadriven.TestData, key string, def int64) int64 {
	s := strArg(d, key, "")
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", key, s, err)
	}
	return v
}

func connectPacket(t *testing.T, d *datadriven.TestData) *packet.Connect {
	c := &packet.Connect{
		Version:    packet.Version(intArg(t, d, "v", 5)),
		ClientID:   strArg(d, "id", ""),
		CleanStart: d.HasArg("clean"),
		KeepAlive:  uint16(intArg(t, d, "keepalive", 0)),
	}
	if d.HasArg("expiry") {
		c.Properties.SessionExpiryInterval = uint32(intArg(t, d, "expiry", 0))
		c.Properties.Present.Add(packet.PropSessionExpiryInterval)
	}
	if d.HasArg("receive_max") {
		c.Properties.ReceiveMaximum = uint16(intArg(t, d, "receive_max", 0))
		c.Properties.Present.Add(packet.PropReceiveMaximum)
	}
	if d.HasArg("max_packet") {
		c.Properties.MaximumPacketSize = uint32(intArg(t, d, "max_packet", 0))
		c.Properties.Present.Add(packet.PropMaximumPacketSize)
	}
	if d.HasArg("alias_max") {
		c.Properties.TopicAliasMaximum = uint16(intArg(t, d, "alias_max", 0))
		c.Properties.Present.Add(packet.PropTopicAliasMaximum)
	}
	if d.HasArg("auth_method") {
		c.Properties.AuthenticationMethod = strArg(d, "auth_method", "")
		c.Properties.Present.Add(packet.PropAuthenticationMethod)
	}
	if d.HasArg("user") {
		c.Username, c.UsernameFlag = strArg(d, "user", ""), true
	}
	if d.HasArg("will") {
		c.WillFlag, c.WillTopic, c.WillPayload = true, strArg(d, "will", ""), []byte("gone")
		c.WillQoS = byte(intArg(t, d, "will_qos", 0))
		c.WillRetain = d.HasArg("will_retain")
	}
	return c
}

func formatAction(a Action) string {
	switch a := a.(type) {
	case Send:
		return "send " + formatPacket(a.Packet, a.Version)
	case Connect:
		r := a.Request
		s := fmt.Sprintf("connect v=%s id=%s clean=%t expiry=%d keepalive=%d", r.Version, r.ClientID, r.CleanStart, r.Expiry, r.KeepAlive)
		if r.AssignedClientID {
			s += " assigned"
		}
		if r.UsernameFlag {
			s += " user=" + r.Username
		}
		if r.Will != nil {
			s += fmt.Sprintf(" will=%s/qos%d", r.Will.Topic, r.Will.QoS)
		}
		return s
	case Store:
		r := a.Request
		s := fmt.Sprintf("store id=%s guard=%d first_seq=%d", r.ClientID, r.Guard, r.FirstSeq)
		for i, msg := range r.Messages {
			s += fmt.Sprintf(" %s/q%d", msg.Topic, msg.QoS)
			if msg.Retain {
				s += "/retain"
			}
			if r.QoS2PacketIDs != nil {
				s += fmt.Sprintf("#%d", r.QoS2PacketIDs[i])
			}
		}
		return s
	case Release:
		r := a.Request
		return fmt.Sprintf("release id=%s guard=%d packet_id=%d", r.ClientID, r.Guard, r.PacketID)
	case Denied:
		return fmt.Sprintf("denied %s %s", a.Access, a.Topic)
	case EndSession:
		return fmt.Sprintf("end-session id=%s guard=%d will=%t expiry=%d reason=%s", a.ClientID, a.Guard, a.Will, a.Expiry, a.Reason)
	case Close:
		return fmt.Sprintf("close reason=%s", a.Reason)
	default:
		if s, ok := formatDeliveryAction(a); ok {
			return s
		}
	}
	return fmt.Sprintf("%#v", a)
}

func formatPacket(p packet.Packet, v packet.Version) string {
	var s string
	switch p := p.(type) {
	case *packet.Connack:
		s = fmt.Sprintf("CONNACK v%s rc=0x%02X present=%t", v, byte(p.ReasonCode), p.SessionPresent)
		s += formatProps(&p.Properties)
	case *packet.Disconnect:
		s = fmt.Sprintf("DISCONNECT rc=0x%02X (%s)", byte(p.ReasonCode), p.ReasonCode)
	case *packet.Suback:
		s = fmt.Sprintf("SUBACK id=%d codes=%s", p.PacketID, formatCodes(p.ReasonCodes))
	case *packet.Unsuback:
		s = fmt.Sprintf("UNSUBACK id=%d codes=%s", p.PacketID, formatCodes(p.ReasonCodes))
	case *packet.Puback:
		s = fmt.Sprintf("PUBACK id=%d rc=0x%02X (%s)", p.PacketID, byte(p.ReasonCode), p.ReasonCode)
	case *packet.Pubrec:
		s = fmt.Sprintf("PUBREC id=%d rc=0x%02X (%s)", p.PacketID, byte(p.ReasonCode), p.ReasonCode)
	case *packet.Pubrel:
		s = fmt.Sprintf("PUBREL id=%d rc=0x%02X", p.PacketID, byte(p.ReasonCode))
	case *packet.Pubcomp:
		s = fmt.Sprintf("PUBCOMP id=%d rc=0x%02X", p.PacketID, byte(p.ReasonCode))
	case *packet.Publish:
		s = formatPublish(p)
	default:
		s = p.Type().String()
	}
	// Every packet the machine sends must encode for its version.
	if _, err := p.Append(nil, v); err != nil {
		s += " ENCODE ERROR: " + err.Error()
	}
	return s
}

func formatCodes(codes []packet.ReasonCode) string {
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("0x%02X", byte(c))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func formatProps(p *packet.Properties) string {
	var parts []string
	for id := packet.PropertyID(1); id <= packet.PropSharedSubscriptionAvailable; id++ {
		if !p.Present.Has(id) {
			continue
		}
		var v any
		switch id {
		case packet.PropReceiveMaximum:
			v = p.ReceiveMaximum
		case packet.PropMaximumPacketSize:
			v = p.MaximumPacketSize
		case packet.PropTopicAliasMaximum:
			v = p.TopicAliasMaximum
		case packet.PropMaximumQoS:
			v = p.MaximumQoS
		case packet.PropRetainAvailable:
			v = p.RetainAvailable
		case packet.PropWildcardSubscriptionAvailable:
			v = p.WildcardSubscriptionAvailable
		case packet.PropSubscriptionIdentifierAvailable:
			v = p.SubscriptionIdentifierAvailable
		case packet.PropSharedSubscriptionAvailable:
			v = p.SharedSubscriptionAvailable
		case packet.PropAssignedClientIdentifier:
			v = p.AssignedClientIdentifier
		case packet.PropServerKeepAlive:
			v = p.ServerKeepAlive
		case packet.PropSessionExpiryInterval:
			v = p.SessionExpiryInterval
		default:
			v = "?"
		}
		parts = append(parts, fmt.Sprintf("%s=%v", id, v))
	}
	if len(parts) == 0 {
		return ""
	}
	return "\n  props: " + strings.Join(parts, ", ")
}
