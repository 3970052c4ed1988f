package packet

import (
	"math/bits"
	"strconv"
)

// PropertyID is an MQTT 5.0 Property Identifier (section 2.2.2.2).
type PropertyID byte

// The MQTT 5.0 properties (section 2.2.2.2, table 2-4).
const (
	PropPayloadFormatIndicator          PropertyID = 0x01
	PropMessageExpiryInterval           PropertyID = 0x02
	PropContentType                     PropertyID = 0x03
	PropResponseTopic                   PropertyID = 0x08
	PropCorrelationData                 PropertyID = 0x09
	PropSubscriptionIdentifier          PropertyID = 0x0B
	PropSessionExpiryInterval           PropertyID = 0x11
	PropAssignedClientIdentifier        PropertyID = 0x12
	PropServerKeepAlive                 PropertyID = 0x13
	PropAuthenticationMethod            PropertyID = 0x15
	PropAuthenticationData              PropertyID = 0x16
	PropRequestProblemInformation       PropertyID = 0x17
	PropWillDelayInterval               PropertyID = 0x18
	PropRequestResponseInformation      PropertyID = 0x19
	PropResponseInformation             PropertyID = 0x1A
	PropServerReference                 PropertyID = 0x1C
	PropReasonString                    PropertyID = 0x1F
	PropReceiveMaximum                  PropertyID = 0x21
	PropTopicAliasMaximum               PropertyID = 0x22
	PropTopicAlias                      PropertyID = 0x23
	PropMaximumQoS                      PropertyID = 0x24
	PropRetainAvailable                 PropertyID = 0x25
	PropUserProperty                    PropertyID = 0x26
	PropMaximumPacketSize               PropertyID = 0x27
	PropWildcardSubscriptionAvailable   PropertyID = 0x28
	PropSubscriptionIdentifierAvailable PropertyID = 0x29
	PropSharedSubscriptionAvailable     PropertyID = 0x2A
)

// DataType is the wire type of a property value (section 1.5).
type DataType byte

// The MQTT 5.0 data types properties use.
const (
	TypeByte DataType = iota + 1
	TypeTwoByteInteger
	TypeFourByteInteger
	TypeVariableByteInteger
	TypeUTF8String
	TypeBinaryData
	TypeUTF8StringPair
)

// inWill marks properties allowed in the Will Properties of CONNECT
// (section 3.1.3.2); bit t marks packet type t.
const inWill = 1 << 0

type propInfo struct {
	name string
	typ  DataType
	in   uint32 // bit per packet type, plus inWill
}

func in(ts ...Type) uint32 {
	var m uint32
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// propTable is table 2-4 of section 2.2.2.2: each property's type and the
// packets that may carry it. A zero entry is an unknown identifier.
var propTable = [PropSharedSubscriptionAvailable + 1]propInfo{
	PropPayloadFormatIndicator:          {"Payload Format Indicator", TypeByte, in(PUBLISH) | inWill},
	PropMessageExpiryInterval:           {"Message Expiry Interval", TypeFourByteInteger, in(PUBLISH) | inWill},
	PropContentType:                     {"Content Type", TypeUTF8String, in(PUBLISH) | inWill},
	PropResponseTopic:                   {"Response Topic", TypeUTF8String, in(PUBLISH) | inWill},
	PropCorrelationData:                 {"Correlation Data", TypeBinaryData, in(PUBLISH) | inWill},
	PropSubscriptionIdentifier:          {"Subscription Identifier", TypeVariableByteInteger, in(PUBLISH, SUBSCRIBE)},
	PropSessionExpiryInterval:           {"Session Expiry Interval", TypeFourByteInteger, in(CONNECT, CONNACK, DISCONNECT)},
	PropAssignedClientIdentifier:        {"Assigned Client Identifier", TypeUTF8String, in(CONNACK)},
	PropServerKeepAlive:                 {"Server Keep Alive", TypeTwoByteInteger, in(CONNACK)},
	PropAuthenticationMethod:            {"Authentication Method", TypeUTF8String, in(CONNECT, CONNACK, AUTH)},
	PropAuthenticationData:              {"Authentication Data", TypeBinaryData, in(CONNECT, CONNACK, AUTH)},
	PropRequestProblemInformation:       {"Request Problem Information", TypeByte, in(CONNECT)},
	PropWillDelayInterval:               {"Will Delay Interval", TypeFourByteInteger, inWill},
	PropRequestResponseInformation:      {"Request Response Information", TypeByte, in(CONNECT)},
	PropResponseInformation:             {"Response Information", TypeUTF8String, in(CONNACK)},
	PropServerReference:                 {"Server Reference", TypeUTF8String, in(CONNACK, DISCONNECT)},
	PropReasonString:                    {"Reason String", TypeUTF8String, in(CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH)},
	PropReceiveMaximum:                  {"Receive Maximum", TypeTwoByteInteger, in(CONNECT, CONNACK)},
	PropTopicAliasMaximum:               {"Topic Alias Maximum", TypeTwoByteInteger, in(CONNECT, CONNACK)},
	PropTopicAlias:                      {"Topic Alias", TypeTwoByteInteger, in(PUBLISH)},
	PropMaximumQoS:                      {"Maximum QoS", TypeByte, in(CONNACK)},
	PropRetainAvailable:                 {"Retain Available", TypeByte, in(CONNACK)},
	PropUserProperty:                    {"User Property", TypeUTF8StringPair, in(CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH) | inWill},
	PropMaximumPacketSize:               {"Maximum Packet Size", TypeFourByteInteger, in(CONNECT, CONNACK)},
	PropWildcardSubscriptionAvailable:   {"Wildcard Subscription Available", TypeByte, in(CONNACK)},
	PropSubscriptionIdentifierAvailable: {"Subscription Identifier Available", TypeByte, in(CONNACK)},
	PropSharedSubscriptionAvailable:     {"Shared Subscription Available", TypeByte, in(CONNACK)},
}

func (id PropertyID) info() (propInfo, bool) {
	if int(id) >= len(propTable) || propTable[id].typ == 0 {
		return propInfo{}, false
	}
	return propTable[id], true
}

// Known reports whether id is a property MQTT 5.0 defines.
func (id PropertyID) Known() bool { _, ok := id.info(); return ok }

// String returns the spec name of the property ("Topic Alias").
func (id PropertyID) String() string {
	if p, ok := id.info(); ok {
		return p.name
	}
	return "Property(0x" + strconv.FormatUint(uint64(id), 16) + ")"
}

// DataType returns the wire type of the property's value, or 0 if id is
// unknown.
func (id PropertyID) DataType() DataType { p, _ := id.info(); return p.typ }

// AllowedIn reports whether a packet of type t may carry the property.
func (id PropertyID) AllowedIn(t Type) bool {
	p, _ := id.info()
	return t != 0 && p.in&(1<<t) != 0
}

// AllowedInWill reports whether the Will Properties of CONNECT may carry the
// property (section 3.1.3.2).
func (id PropertyID) AllowedInWill() bool { p, _ := id.info(); return p.in&inWill != 0 }

// Repeatable reports whether the property may appear more than once in one
// packet: User Property everywhere, Subscription Identifier in PUBLISH
// (section 3.3.2.3.8). Any other repeat is a Protocol Error.
func (id PropertyID) Repeatable(t Type) bool {
	return id == PropUserProperty || (id == PropSubscriptionIdentifier && t == PUBLISH)
}

// PropertySet is a set of property identifiers, one bit per identifier.
type PropertySet uint64

// Has reports whether id is in the set.
func (s PropertySet) Has(id PropertyID) bool { return id < 64 && s&(1<<id) != 0 }

// Add puts id in the set.
func (s *PropertySet) Add(id PropertyID) {
	if id < 64 {
		*s |= 1 << id
	}
}

// Remove takes id out of the set.
func (s *PropertySet) Remove(id PropertyID) {
	if id < 64 {
		*s &^= 1 << id
	}
}

// UserProperty is one User Property, a UTF-8 string pair (section 1.5.7).
type UserProperty struct {
	Key, Value string
}

// Properties holds the MQTT 5.0 properties of one packet, or the Will
// Properties of a CONNECT.
//
// A property with a single value is there when its identifier is in
// Present; its field is ignored otherwise, so a property whose value is the
// zero value can still be sent. The two properties that may repeat, User
// Property and Subscription Identifier, are there when their slices are not
// empty and are never in Present. Byte slices from the decoder alias the
// packet bytes.
type Properties struct {
	// Present holds the single-valued properties that are set.
	Present PropertySet

	PayloadFormatIndicator          byte
	RequestProblemInformation       byte
	RequestResponseInformation      byte
	MaximumQoS                      byte
	RetainAvailable                 byte
	WildcardSubscriptionAvailable   byte
	SubscriptionIdentifierAvailable byte
	SharedSubscriptionAvailable     byte

	ServerKeepAlive   uint16
	ReceiveMaximum    uint16
	TopicAliasMaximum uint16
	TopicAlias        uint16

	MessageExpiryInterval uint32
	SessionExpiryInterval uint32
	WillDelayInterval     uint32
	MaximumPacketSize     uint32

	ContentType              string
	ResponseTopic            string
	AssignedClientIdentifier string
	AuthenticationMethod     string
	ResponseInformation      string
	ServerReference          string
	ReasonString             string

	CorrelationData    []byte
	AuthenticationData []byte

	// SubscriptionIdentifiers holds the Subscription Identifiers, in wire
	// order: several in a PUBLISH from a server, at most one in SUBSCRIBE.
	SubscriptionIdentifiers []uint32
	// UserProperties holds the User Properties in wire order, which a
	// server forwarding them must keep [MQTT-3.3.2-18].
	UserProperties []UserProperty
}

// Empty reports whether no property is set.
func (p *Properties) Empty() bool {
	return p.Present == 0 && len(p.SubscriptionIdentifiers) == 0 && len(p.UserProperties) == 0
}

// allowedMask is the PropertySet of identifiers allowed where mask (a
// propInfo.in bit) applies.
func allowedMask(where uint32) PropertySet {
	var s PropertySet
	for id := range propTable {
		if propTable[id].in&where != 0 {
			s |= 1 << id
		}
	}
	return s
}

var (
	allowedByType [AUTH + 1]PropertySet
	allowedInWill = allowedMask(inWill)
)

func init() {
	for t := CONNECT; t <= AUTH; t++ {
		allowedByType[t] = allowedMask(1 << t)
	}
}

// decodeProperties reads a property length and the properties it covers
// (section 2.2.2) into p. will selects the Will Properties table.
func (d *decoder) properties(p *Properties, will bool) {
	allowed := allowedInWill
	if !will {
		allowed = allowedByType[d.t]
	}
	n := d.varint("property length")
	if d.err != nil {
		return
	}
	if uint64(n) > uint64(d.remaining()) {
		d.fail(malformed(d.t, "", "property length runs past the end of the packet"))
		return
	}
	end := d.off + int(n)
	if users, ids := countRepeated(d.b[d.off:end]); users > 0 || ids > 0 {
		// Allocate the repeatable properties once, at their final size,
		// so decoding allocates in proportion to the packet.
		if users > 0 {
			p.UserProperties = make([]UserProperty, 0, users)
		}
		if ids > 0 {
			p.SubscriptionIdentifiers = make([]uint32, 0, ids)
		}
	}
	// Read the properties through a decoder that ends where they end, so a
	// value that crosses the property length is malformed.
	pd := decoder{b: d.b[:end], off: d.off, t: d.t, v: d.v}
	var seen PropertySet
	for pd.err == nil && pd.off < end {
		id := PropertyID(pd.b[pd.off])
		pd.off++
		info, ok := id.info()
		if !ok {
			pd.fail(malformed(d.t, "", "unknown property identifier 0x"+strconv.FormatUint(uint64(id), 16)))
			break
		}
		if !allowed.Has(id) {
			where := d.t.String()
			if will {
				where = "Will Properties"
			}
			// section 2.2.2.2: an identifier not valid for the packet
			// type is a Malformed Packet.
			pd.fail(malformed(d.t, "", info.name+" is not allowed in "+where))
			break
		}
		if seen.Has(id) && !id.Repeatable(d.t) {
			pd.fail(protocolError(d.t, "", info.name+" appears more than once"))
			break
		}
		seen.Add(id)
		pd.property(p, id, info)
	}
	d.off = pd.off
	if pd.err != nil {
		d.fail(pd.err)
	}
}

// countRepeated counts the User Properties and Subscription Identifiers in a
// property block. It stops at the first property it cannot step over; the
// decoder reports that one.
func countRepeated(b []byte) (users, ids int) {
	for len(b) > 0 {
		id := PropertyID(b[0])
		b = b[1:]
		n := 0
		switch id.DataType() {
		case TypeByte:
			n = 1
		case TypeTwoByteInteger:
			n = 2
		case TypeFourByteInteger:
			n = 4
		case TypeVariableByteInteger:
			var st int
			if _, n, st = parseVarint(b); st != varintOK {
				return
			}
		case TypeUTF8String, TypeBinaryData:
			if len(b) < 2 {
				return
			}
			n = 2 + (int(b[0])<<8 | int(b[1]))
		case TypeUTF8StringPair:
			if len(b) < 2 {
				return
			}
			n = 2 + (int(b[0])<<8 | int(b[1]))
			if len(b) < n+2 {
				return
			}
			n += 2 + (int(b[n])<<8 | int(b[n+1]))
		default:
			return
		}
		if n > len(b) {
			return
		}
		b = b[n:]
		switch id {
		case PropUserProperty:
			users++
		case PropSubscriptionIdentifier:
			ids++
		}
	}
	return
}

// property reads the value of one property whose identifier has been read.
func (d *decoder) property(p *Properties, id PropertyID, info propInfo) {
	what := info.name
	switch id {
	case PropSubscriptionIdentifier:
		v := d.varint(what)
		if d.err == nil {
			p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, v)
		}
		return
	case PropUserProperty:
		k := d.str(what + " name")
		v := d.str(what + " value")
		if d.err == nil {
			p.UserProperties = append(p.UserProperties, UserProperty{k, v})
		}
		return
	}
	switch id {
	case PropPayloadFormatIndicator:
		p.PayloadFormatIndicator = d.u8(what)
	case PropRequestProblemInformation:
		p.RequestProblemInformation = d.u8(what)
	case PropRequestResponseInformation:
		p.RequestResponseInformation = d.u8(what)
	case PropMaximumQoS:
		p.MaximumQoS = d.u8(what)
	case PropRetainAvailable:
		p.RetainAvailable = d.u8(what)
	case PropWildcardSubscriptionAvailable:
		p.WildcardSubscriptionAvailable = d.u8(what)
	case PropSubscriptionIdentifierAvailable:
		p.SubscriptionIdentifierAvailable = d.u8(what)
	case PropSharedSubscriptionAvailable:
		p.SharedSubscriptionAvailable = d.u8(what)
	case PropServerKeepAlive:
		p.ServerKeepAlive = d.u16(what)
	case PropReceiveMaximum:
		p.ReceiveMaximum = d.u16(what)
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = d.u16(what)
	case PropTopicAlias:
		p.TopicAlias = d.u16(what)
	case PropMessageExpiryInterval:
		p.MessageExpiryInterval = d.u32(what)
	case PropSessionExpiryInterval:
		p.SessionExpiryInterval = d.u32(what)
	case PropWillDelayInterval:
		p.WillDelayInterval = d.u32(what)
	case PropMaximumPacketSize:
		p.MaximumPacketSize = d.u32(what)
	case PropContentType:
		p.ContentType = d.str(what)
	case PropResponseTopic:
		p.ResponseTopic = d.str(what)
	case PropAssignedClientIdentifier:
		p.AssignedClientIdentifier = d.str(what)
	case PropAuthenticationMethod:
		p.AuthenticationMethod = d.str(what)
	case PropResponseInformation:
		p.ResponseInformation = d.str(what)
	case PropServerReference:
		p.ServerReference = d.str(what)
	case PropReasonString:
		p.ReasonString = d.str(what)
	case PropCorrelationData:
		p.CorrelationData = d.binary(what)
	case PropAuthenticationData:
		p.AuthenticationData = d.binary(what)
	}
	if d.err == nil {
		p.Present.Add(id)
	}
}

// propsSize returns the size of the properties, without the property length
// in front of them, and records in s a property the packet may not carry.
func (p *Properties) size(s *sizer, t Type, will bool) int {
	allowed := allowedInWill
	where := "Will Properties"
	if !will {
		allowed = allowedByType[t]
		where = t.String()
	}
	present := p.Present &^ (1<<PropSubscriptionIdentifier | 1<<PropUserProperty)
	if bad := present &^ allowed; bad != 0 {
		for id := PropertyID(0); id < 64; id++ {
			if bad.Has(id) {
				s.fail(t, id.String()+" is not allowed in "+where)
				break
			}
		}
	}
	if len(p.SubscriptionIdentifiers) > 0 && !allowed.Has(PropSubscriptionIdentifier) {
		s.fail(t, "Subscription Identifier is not allowed in "+where)
	}
	if len(p.UserProperties) > 0 && !allowed.Has(PropUserProperty) {
		s.fail(t, "User Property is not allowed in "+where)
	}
	n := 0
	for m := present; m != 0; m &= m - 1 {
		id := PropertyID(bits.TrailingZeros64(uint64(m)))
		switch propTable[id].typ {
		case TypeByte:
			n += 2
		case TypeTwoByteInteger:
			n += 3
		case TypeFourByteInteger:
			n += 5
		case TypeUTF8String, TypeBinaryData:
			l := len(p.stringValue(id))
			if id == PropCorrelationData || id == PropAuthenticationData {
				l = len(p.binaryValue(id))
			}
			if l > maxStringLength {
				s.fail(t, id.String()+" is longer than 65535 bytes")
			}
			n += 3 + l
		}
	}
	for _, v := range p.SubscriptionIdentifiers {
		if v > maxRemainingLength {
			s.fail(t, "Subscription Identifier exceeds 268435455")
		}
		n += 1 + varintLen(v)
	}
	for _, u := range p.UserProperties {
		if len(u.Key) > maxStringLength || len(u.Value) > maxStringLength {
			s.fail(t, "User Property is longer than 65535 bytes")
		}
		n += 5 + len(u.Key) + len(u.Value)
	}
	return n
}

func (p *Properties) stringValue(id PropertyID) string {
	switch id {
	case PropContentType:
		return p.ContentType
	case PropResponseTopic:
		return p.ResponseTopic
	case PropAssignedClientIdentifier:
		return p.AssignedClientIdentifier
	case PropAuthenticationMethod:
		return p.AuthenticationMethod
	case PropResponseInformation:
		return p.ResponseInformation
	case PropServerReference:
		return p.ServerReference
	case PropReasonString:
		return p.ReasonString
	}
	return ""
}

func (p *Properties) binaryValue(id PropertyID) []byte {
	if id == PropCorrelationData {
		return p.CorrelationData
	}
	if id == PropAuthenticationData {
		return p.AuthenticationData
	}
	return nil
}

// appendTo appends the property length n (from size) and the properties, in
// identifier order, with repeated ones in slice order.
func (p *Properties) appendTo(dst []byte, n int) []byte {
	dst = appendVarint(dst, uint32(n))
	if n == 0 {
		return dst
	}
	// Walk the set bits in identifier order; the repeatable properties
	// take their place in that order when their slices are not empty.
	mask := p.Present &^ (1<<PropSubscriptionIdentifier | 1<<PropUserProperty)
	if len(p.SubscriptionIdentifiers) > 0 {
		mask.Add(PropSubscriptionIdentifier)
	}
	if len(p.UserProperties) > 0 {
		mask.Add(PropUserProperty)
	}
	for ; mask != 0; mask &= mask - 1 {
		id := PropertyID(bits.TrailingZeros64(uint64(mask)))
		if id == PropSubscriptionIdentifier {
			for _, v := range p.SubscriptionIdentifiers {
				dst = appendVarint(append(dst, byte(id)), v)
			}
			continue
		}
		if id == PropUserProperty {
			for _, u := range p.UserProperties {
				dst = appendString(appendString(append(dst, byte(id)), u.Key), u.Value)
			}
			continue
		}
		dst = append(dst, byte(id))
		switch id {
		case PropPayloadFormatIndicator:
			dst = append(dst, p.PayloadFormatIndicator)
		case PropRequestProblemInformation:
			dst = append(dst, p.RequestProblemInformation)
		case PropRequestResponseInformation:
			dst = append(dst, p.RequestResponseInformation)
		case PropMaximumQoS:
			dst = append(dst, p.MaximumQoS)
		case PropRetainAvailable:
			dst = append(dst, p.RetainAvailable)
		case PropWildcardSubscriptionAvailable:
			dst = append(dst, p.WildcardSubscriptionAvailable)
		case PropSubscriptionIdentifierAvailable:
			dst = append(dst, p.SubscriptionIdentifierAvailable)
		case PropSharedSubscriptionAvailable:
			dst = append(dst, p.SharedSubscriptionAvailable)
		case PropServerKeepAlive:
			dst = appendU16(dst, p.ServerKeepAlive)
		case PropReceiveMaximum:
			dst = appendU16(dst, p.ReceiveMaximum)
		case PropTopicAliasMaximum:
			dst = appendU16(dst, p.TopicAliasMaximum)
		case PropTopicAlias:
			dst = appendU16(dst, p.TopicAlias)
		case PropMessageExpiryInterval:
			dst = appendU32(dst, p.MessageExpiryInterval)
		case PropSessionExpiryInterval:
			dst = appendU32(dst, p.SessionExpiryInterval)
		case PropWillDelayInterval:
			dst = appendU32(dst, p.WillDelayInterval)
		case PropMaximumPacketSize:
			dst = appendU32(dst, p.MaximumPacketSize)
		case PropCorrelationData, PropAuthenticationData:
			dst = appendBinary(dst, p.binaryValue(id))
		default:
			dst = appendString(dst, p.stringValue(id))
		}
	}
	return dst
}
