package packet

import "unicode/utf8"

// ValidateOptions are the receiver's settings that decide whether a
// well-formed packet is allowed. The zero value validates packets a server
// receives from a client that may not use Topic Aliases.
type ValidateOptions struct {
	// FromServer says the packet was sent by a server, that is the
	// validator runs in a client. Some rules depend on the direction, such
	// as Subscription Identifiers in PUBLISH [MQTT-3.3.4-6].
	FromServer bool
	// TopicAliasMaximum is the highest Topic Alias the receiver accepts in
	// PUBLISH, as it announced in CONNECT or CONNACK; 0 (the MQTT default)
	// accepts none [MQTT-3.2.2-17] [MQTT-3.3.2-8].
	TopicAliasMaximum uint16
	// MaxClientIDLength, when above zero, refuses longer Client
	// Identifiers with ClientIdentifierNotValid. MQTT 3.1 always allows
	// at most 23 bytes.
	MaxClientIDLength int
}

// Validate answers whether a well-formed packet, as decoded with version v,
// is allowed: it checks the protocol rules that concern the packet alone
// (non-zero packet identifiers, reason codes the packet type may carry,
// property values, topic names, client identifier rules) and returns nil or
// the ReasonCode the receiver answers with. Rules that need connection
// state (a second CONNECT, packet identifiers in use, Receive Maximum,
// authorization) belong to the session, not here.
//
// Topic filters of a SUBSCRIBE or UNSUBSCRIBE are not checked, because an
// invalid filter earns its own reason code in SUBACK or UNSUBACK while the
// others are processed: call ValidateTopicFilter for each.
//
// For CONNECT v is ignored and the packet's own Version is used.
func Validate(p Packet, v Version, opts ValidateOptions) error {
	switch p := p.(type) {
	case *Connect:
		return validateConnect(p, opts)
	case *Connack:
		return validateConnack(p, v)
	case *Publish:
		return validatePublish(p, v, opts)
	case *Puback:
		return validateAck((*ack)(p), PUBACK, v)
	case *Pubrec:
		return validateAck((*ack)(p), PUBREC, v)
	case *Pubrel:
		return validateAck((*ack)(p), PUBREL, v)
	case *Pubcomp:
		return validateAck((*ack)(p), PUBCOMP, v)
	case *Subscribe:
		return validateSubscribe(p, v)
	case *Suback:
		return validateSuback(p, v)
	case *Unsubscribe:
		if p.PacketID == 0 {
			return ProtocolError // [MQTT-2.2.1-3]
		}
		if len(p.Filters) == 0 {
			return ProtocolError // [MQTT-3.10.3-2]
		}
		return nil
	case *Unsuback:
		if p.PacketID == 0 {
			return ProtocolError // [MQTT-2.2.1-3]
		}
		return validateReasons(p.ReasonCodes, UNSUBACK, v)
	case *Disconnect:
		if v == V5 && !p.ReasonCode.AllowedIn(DISCONNECT) {
			return ProtocolError // [MQTT-3.14.2-1]
		}
		return nil
	case *Auth:
		return validateAuth(p)
	}
	return nil
}

// isBool checks the properties whose value must be 0 or 1; any other value
// is a Protocol Error (sections 3.1.2.11.6, 3.1.2.11.7, 3.2.2.3.5,
// 3.2.2.3.11-13, 3.3.2.3.2).
func (p *Properties) isBool() bool {
	for _, c := range [...]struct {
		id PropertyID
		v  byte
	}{
		{PropPayloadFormatIndicator, p.PayloadFormatIndicator},
		{PropRequestProblemInformation, p.RequestProblemInformation},
		{PropRequestResponseInformation, p.RequestResponseInformation},
		{PropMaximumQoS, p.MaximumQoS},
		{PropRetainAvailable, p.RetainAvailable},
		{PropWildcardSubscriptionAvailable, p.WildcardSubscriptionAvailable},
		{PropSubscriptionIdentifierAvailable, p.SubscriptionIdentifierAvailable},
		{PropSharedSubscriptionAvailable, p.SharedSubscriptionAvailable},
	} {
		if p.Present.Has(c.id) && c.v > 1 {
			return false
		}
	}
	return true
}

// validateProperties checks the property values any packet may carry.
func validateProperties(p *Properties, payload []byte) error {
	if !p.isBool() {
		return ProtocolError
	}
	if p.Present.Has(PropReceiveMaximum) && p.ReceiveMaximum == 0 {
		return ProtocolError // section 3.1.2.11.3, 3.2.2.3.3
	}
	if p.Present.Has(PropMaximumPacketSize) && p.MaximumPacketSize == 0 {
		return ProtocolError // section 3.1.2.11.4, 3.2.2.3.6
	}
	if p.Present.Has(PropAuthenticationData) && !p.Present.Has(PropAuthenticationMethod) {
		return ProtocolError // section 3.1.2.11.10
	}
	for _, id := range p.SubscriptionIdentifiers {
		if id == 0 {
			return ProtocolError // section 3.3.2.3.8, 3.8.2.1.2
		}
	}
	if p.Present.Has(PropResponseTopic) && ValidateTopicName(p.ResponseTopic) != nil {
		return ProtocolError // [MQTT-3.3.2-14]
	}
	if p.Present.Has(PropPayloadFormatIndicator) && p.PayloadFormatIndicator == 1 && !utf8.Valid(payload) {
		return PayloadFormatInvalid // section 3.3.2.3.2; section 3.1.3.2.3 for the Will
	}
	return nil
}

func validateConnect(c *Connect, opts ValidateOptions) error {
	switch c.Version {
	case V31:
		// MQTT 3.1 section 3.1: the Client Identifier is 1 to 23 bytes.
		if c.ClientID == "" || len(c.ClientID) > 23 {
			return ClientIdentifierNotValid
		}
	case V311:
		if c.ClientID == "" && !c.CleanStart {
			return ClientIdentifierNotValid // [MQTT-3.1.3-8]
		}
	}
	if opts.MaxClientIDLength > 0 && len(c.ClientID) > opts.MaxClientIDLength {
		return ClientIdentifierNotValid // [MQTT-3.1.3-5]
	}
	if err := validateProperties(&c.Properties, nil); err != nil {
		return err
	}
	if c.WillFlag {
		if err := ValidateTopicName(c.WillTopic); err != nil {
			return err
		}
		if err := validateProperties(&c.WillProperties, c.WillPayload); err != nil {
			return err
		}
	}
	return nil
}

func validateConnack(c *Connack, v Version) error {
	if v == V5 {
		if !c.ReasonCode.AllowedIn(CONNACK) {
			return ProtocolError
		}
	} else if c.ReasonCode > ReasonCode(ConnectRefusedNotAuthorized) {
		return ProtocolError // 3.1.1 section 3.2.2.3: 6-255 are reserved
	}
	if c.SessionPresent && c.ReasonCode != Success {
		return ProtocolError // [MQTT-3.2.2-6] (v5), [MQTT-3.2.2-4] (3.1.1)
	}
	return validateProperties(&c.Properties, nil)
}

func validatePublish(p *Publish, v Version, opts ValidateOptions) error {
	if p.QoS > 0 && p.PacketID == 0 {
		return ProtocolError // [MQTT-2.2.1-3] (v5), [MQTT-2.3.1-1] (3.1.1)
	}
	if p.QoS == 0 && p.Dup {
		return ProtocolError // [MQTT-3.3.1-2]
	}
	props := &p.Properties
	hasAlias := props.Present.Has(PropTopicAlias)
	if hasAlias && (props.TopicAlias == 0 || props.TopicAlias > opts.TopicAliasMaximum) {
		return TopicAliasInvalid // [MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.3.2-10]
	}
	if p.Topic == "" && v == V5 {
		if !hasAlias {
			return ProtocolError // section 3.3.2.1: empty topic needs a Topic Alias
		}
	} else if err := ValidateTopicName(p.Topic); err != nil {
		return err
	}
	if !opts.FromServer && len(props.SubscriptionIdentifiers) > 0 {
		return ProtocolError // [MQTT-3.3.4-6]
	}
	return validateProperties(props, p.Payload)
}

func validateAck(a *ack, t Type, v Version) error {
	if a.PacketID == 0 {
		return ProtocolError // [MQTT-2.2.1-3]
	}
	if v == V5 && !a.ReasonCode.AllowedIn(t) {
		return ProtocolError
	}
	return nil
}

func validateSubscribe(p *Subscribe, v Version) error {
	if p.PacketID == 0 {
		return ProtocolError // [MQTT-2.2.1-3]
	}
	if len(p.Subscriptions) == 0 {
		return ProtocolError // [MQTT-3.8.3-2] (v5), [MQTT-3.8.3-3] (3.1.1)
	}
	if len(p.Properties.SubscriptionIdentifiers) > 1 {
		return ProtocolError // section 3.8.2.1.2
	}
	if v == V5 {
		for _, s := range p.Subscriptions {
			if _, _, shared := SplitShared(s.Filter); shared && s.NoLocal {
				return ProtocolError // [MQTT-3.8.3-4] (v5)
			}
		}
	}
	return validateProperties(&p.Properties, nil)
}

func validateSuback(p *Suback, v Version) error {
	if p.PacketID == 0 {
		return ProtocolError // [MQTT-2.2.1-3]
	}
	if len(p.ReasonCodes) == 0 {
		return ProtocolError // section 3.9.3: one code per filter
	}
	return validateReasons(p.ReasonCodes, SUBACK, v)
}

// validateReasons checks SUBACK and UNSUBACK payloads.
func validateReasons(codes []ReasonCode, t Type, v Version) error {
	for _, c := range codes {
		switch {
		case v == V5:
			if !c.AllowedIn(t) {
				return ProtocolError
			}
		case c > GrantedQoS2 && (v == V31 || c != UnspecifiedError):
			// 3.1.1 section 3.9.3: 0x00-0x02 and 0x80; 3.1 has no 0x80.
			return ProtocolError
		}
	}
	return nil
}

func validateAuth(p *Auth) error {
	if !p.ReasonCode.AllowedIn(AUTH) {
		return ProtocolError // [MQTT-3.15.2-1]
	}
	if !p.Properties.Present.Has(PropAuthenticationMethod) {
		return ProtocolError // section 3.15.2.2.2
	}
	return validateProperties(&p.Properties, nil)
}
