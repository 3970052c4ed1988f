package session

import (
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// connect checks a CONNECT and, if the machine accepts it, asks the driver
// to admit, authenticate and open the session (a Connect action).
func (m *Machine) connect(c *packet.Connect) {
	m.version = c.Version
	v5 := c.Version == packet.V5
	// Client identifier rules, among them [MQTT-3.1.3-8] (3.1.1): an empty
	// one needs Clean Session; MQTT 3.1 needs 1 to 23 bytes.
	if err := packet.Validate(c, c.Version, packet.ValidateOptions{MaxClientIDLength: m.cfg.MaxClientIDLength}); err != nil {
		code, _ := packet.CodeOf(err)
		m.refuse(code, false)
		return
	}
	if v5 && c.Properties.Present.Has(packet.PropAuthenticationMethod) {
		m.refuse(packet.BadAuthenticationMethod, false) // no enhanced authentication
		return
	}
	if c.WillFlag && sysTopic(c.WillTopic) {
		m.out = append(m.out, Denied{Access: AccessPublish, Topic: c.WillTopic})
		m.refuse(packet.NotAuthorized, false) // the $SYS topics are the gateway's, wills included
		return
	}
	if v5 && c.WillFlag && c.WillQoS > m.cfg.MaxQoS {
		m.refuse(packet.QoSNotSupported, false) // [MQTT-3.2.2-12]
		return
	}
	if v5 && c.WillFlag && c.WillRetain && !m.cfg.RetainAvailable {
		m.refuse(packet.RetainNotSupported, false) // [MQTT-3.2.2-13]
		return
	}

	keepAlive := c.KeepAlive
	switch {
	case v5 && m.cfg.HasServerKeepAlive:
		// [MQTT-3.2.2-21] [MQTT-3.2.2-22]: the server's value replaces
		// the client's and is sent in CONNACK.
		keepAlive = m.cfg.ServerKeepAlive
		m.serverKeepAlive, m.hasServerKeepAlive = keepAlive, true
	case m.cfg.MaxKeepAlive > 0 && keepAlive > m.cfg.MaxKeepAlive:
		if !v5 {
			// A 3.1.1 client cannot be told another value.
			m.refuse(packet.ClientIdentifierNotValid, false) // return code 0x02
			return
		}
		keepAlive = m.cfg.MaxKeepAlive
		m.serverKeepAlive, m.hasServerKeepAlive = keepAlive, true
	}

	clientID, assigned := c.ClientID, false
	if clientID == "" {
		// [MQTT-3.1.3-6]: a zero-length id (Validate refused it where it
		// is not allowed) gets a unique one, returned to MQTT 5 clients in
		// Assigned Client Identifier [MQTT-3.2.2-16].
		clientID, assigned = m.cfg.NewClientID(), true
	}

	var expiry uint32
	if v5 {
		if c.Properties.Present.Has(packet.PropSessionExpiryInterval) {
			expiry = c.Properties.SessionExpiryInterval
		}
		m.connectExpiryZero = expiry == 0
		if m.cfg.MaxSessionExpiry > 0 && expiry > m.cfg.MaxSessionExpiry {
			expiry, m.expiryCapped = m.cfg.MaxSessionExpiry, true
		}
	} else if !c.CleanStart {
		expiry = m.cfg.SessionExpiry
	}
	if !m.cfg.Durable && expiry > 0 {
		// Sessions of this zone end with the connection; MQTT 5 clients
		// are told in CONNACK (Session Expiry Interval, MQTT 5 section 3.2.2.3.2).
		expiry = 0
		m.expiryCapped = v5
	}
	m.expiry = expiry
	m.clientReceiveMax = m.cfg.ReceiveMaximum
	if v5 {
		m.clientReceiveMax = 65535
		if c.Properties.Present.Has(packet.PropReceiveMaximum) {
			m.clientReceiveMax = c.Properties.ReceiveMaximum
		}
		if c.Properties.Present.Has(packet.PropMaximumPacketSize) {
			m.clientMaxPacket = c.Properties.MaximumPacketSize
		}
		if c.Properties.Present.Has(packet.PropTopicAliasMaximum) {
			m.clientAliasMax = c.Properties.TopicAliasMaximum
		}
	}

	m.req = ConnectRequest{
		Version:          c.Version,
		ClientID:         clientID,
		AssignedClientID: assigned,
		CleanStart:       c.CleanStart,
		Expiry:           expiry,
		KeepAlive:        keepAlive,
		Username:         c.Username,
		UsernameFlag:     c.UsernameFlag,
		Password:         c.Password,
		PasswordFlag:     c.PasswordFlag,
	}
	if c.WillFlag {
		w := &Will{Topic: c.WillTopic, Payload: c.WillPayload, QoS: c.WillQoS, Retain: c.WillRetain, Properties: c.WillProperties}
		if c.WillProperties.Present.Has(packet.PropWillDelayInterval) {
			w.Delay = c.WillProperties.WillDelayInterval
			w.Properties.Present.Remove(packet.PropWillDelayInterval)
		}
		m.req.Will = w
	}
	m.state = stateConnecting
	m.deadline = time.Time{} // the driver bounds the Connect action itself
	m.out = append(m.out, Connect{Request: m.req})
}

// ConnectDone takes the driver's answer to a Connect action: CONNACK 0x00 and
// keep-alive from now on, or a refusal.
func (m *Machine) ConnectDone(now time.Time, r ConnectResult) []Action {
	switch m.state {
	case stateConnecting:
	case stateClosed:
		// The connection ended (shutdown, kick) while the session was
		// being opened: give the session back.
		if r.Code == packet.Success && r.Guard != 0 {
			m.out = append(m.out, EndSession{ClientID: m.req.ClientID, Guard: r.Guard, Will: m.req.Will != nil, Expiry: m.expiry, Reason: m.closeReason})
		}
		return m.flush()
	default:
		return nil
	}
	// The driver has authenticated the client: the connection keeps no
	// password (nor the read buffer it may point into) for its life.
	m.req.Password = nil
	if r.Code != packet.Success {
		m.refuse(r.Code, r.NoConnack)
		return m.flush()
	}
	m.sessionOpen, m.guard, m.authorize = true, r.Guard, r.Authorize
	m.authExpiry = r.AuthExpires
	ack := &packet.Connack{SessionPresent: r.SessionPresent && !m.req.CleanStart} // [MQTT-3.2.2-2]
	if m.version == packet.V5 {
		m.connackProperties(&ack.Properties)
	}
	m.send(ack)
	m.state = stateConnected
	m.loadHeld(r)
	m.timeout = KeepAliveTimeout(m.req.KeepAlive, m.cfg.KeepAliveBackoff)
	if m.timeout > 0 {
		m.deadline = now.Add(m.timeout)
	}
	m.now = now
	m.initDelivery(m.cfg.Durable && m.expiry > 0, m.clientReceiveMax, m.clientMaxPacket, m.clientAliasMax)
	if m.d.durable && m.cfg.CheckpointInterval > 0 {
		m.d.c.nextCheckpoint = now.Add(m.cfg.CheckpointInterval)
	}
	if ack.SessionPresent && r.Session != nil {
		m.resume(r.Session, r.Watermarks)
		m.sendPubrels()
		m.pump()
	}
	return m.flush()
}

// connackProperties sets what the gateway enforces, leaving out what equals
// the MQTT 5 default.
func (m *Machine) connackProperties(p *packet.Properties) {
	set := func(id packet.PropertyID) { p.Present.Add(id) }
	if r := m.cfg.ReceiveMaximum; r > 0 && r < 65535 {
		p.ReceiveMaximum = r
		set(packet.PropReceiveMaximum)
	}
	if m.cfg.MaxPacketSize > 0 {
		p.MaximumPacketSize = m.cfg.MaxPacketSize
		set(packet.PropMaximumPacketSize)
	}
	if m.cfg.TopicAliasMaximum > 0 {
		p.TopicAliasMaximum = m.cfg.TopicAliasMaximum
		set(packet.PropTopicAliasMaximum)
	}
	if m.cfg.MaxQoS < 2 {
		p.MaximumQoS = m.cfg.MaxQoS
		set(packet.PropMaximumQoS)
	}
	if !m.cfg.RetainAvailable {
		p.RetainAvailable = 0
		set(packet.PropRetainAvailable)
	}
	if !m.cfg.WildcardAvailable {
		p.WildcardSubscriptionAvailable = 0
		set(packet.PropWildcardSubscriptionAvailable)
	}
	if !m.cfg.SubscriptionIDAvailable {
		p.SubscriptionIdentifierAvailable = 0
		set(packet.PropSubscriptionIdentifierAvailable)
	}
	if !m.cfg.SharedAvailable {
		p.SharedSubscriptionAvailable = 0
		set(packet.PropSharedSubscriptionAvailable)
	}
	if m.req.AssignedClientID {
		p.AssignedClientIdentifier = m.req.ClientID
		set(packet.PropAssignedClientIdentifier)
	}
	if m.hasServerKeepAlive {
		p.ServerKeepAlive = m.serverKeepAlive
		set(packet.PropServerKeepAlive)
	}
	if m.expiryCapped {
		p.SessionExpiryInterval = m.expiry
		set(packet.PropSessionExpiryInterval)
	}
}

// refuse answers a CONNECT with a failure code and closes: MQTT 5 gets the
// reason code, MQTT 3.1/3.1.1 the matching return code, or no CONNACK when
// there is none [MQTT-3.2.2-7] (3.1.1 section 3.2.2.3).
func (m *Machine) refuse(code packet.ReasonCode, noConnack bool) {
	if !noConnack {
		if m.version == packet.V5 {
			m.send(&packet.Connack{ReasonCode: code})
		} else if rc, ok := packet.V3ConnectReturnCode(code); ok {
			m.send(&packet.Connack{ReasonCode: packet.ReasonCode(rc)})
		}
	}
	m.end(ReasonConnectRefused, false)
}
