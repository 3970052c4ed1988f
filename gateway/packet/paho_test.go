package packet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/google/go-cmp/cmp"
)

// The differential test decodes every MQTT 5.0 golden case and FuzzDecode
// seed with this package and with paho.golang's packets package, and
// requires that both accept or both refuse and that accepted packets carry
// the same fields. Every deliberate disagreement is one row of the table
// below; a difference not explained by a row fails the test, and so does a
// row no input exercises.
//
// | id                 | who refuses | why                                                          | spec                          |
// |--------------------|-------------|--------------------------------------------------------------|-------------------------------|
// | fixed-flags        | us          | reserved fixed header flags not as listed                    | [MQTT-2.1.3-1]                |
// | publish-qos3       | us          | PUBLISH with QoS 3                                           | [MQTT-3.3.1-4]                |
// | connect-reserved   | us          | CONNECT reserved flag set                                    | [MQTT-3.1.2-3]                |
// | will-flags         | us          | Will QoS/Retain without Will Flag, Will QoS 3                | [MQTT-3.1.2-11] -12, -13      |
// | protocol-version   | us          | protocol name or level other than MQTT/5, MQTT/4, MQIsdp/3  | [MQTT-3.1.2-1] [MQTT-3.1.2-2] |
// | will-properties    | us          | CONNECT-only property in Will Properties                     | section 3.1.3.2               |
// | connack-flags      | us          | reserved CONNACK acknowledge flags                           | [MQTT-3.2.2-1] (3.2.2.1)      |
// | sub-options        | us          | reserved option bits, Maximum QoS 3, Retain Handling 3       | [MQTT-3.8.3-5], 3.8.3.1       |
// | utf8               | us          | ill-formed UTF-8, surrogates or U+0000 in a string           | [MQTT-1.5.4-1] [MQTT-1.5.4-2] |
// | varint             | us          | non-minimal or five-byte Variable Byte Integer               | [MQTT-1.5.5-1]                |
// | trailing           | us          | bytes after the last field (paho ignores them)               | sections 2.1.4, 3.x.2         |
// | past-end           | us          | property length or value past the packet (paho truncates)    | section 2.2.2.1               |
// | duplicate-property | us          | property other than User Property/Subscription Id twice      | section 2.2.2.2               |
// | disconnect-short   | paho        | DISCONNECT with remaining length 0 (Normal disconnection)    | section 3.14.2.1              |
// | multi-sub-id       | (fields)    | paho keeps only the last of several Subscription Identifiers | section 3.3.4                 |
var pahoDisagreements = map[string]string{
	"fixed-flags":        "MQTT-2.1.3-1",
	"publish-qos3":       "MQTT-3.3.1-4",
	"connect-reserved":   "MQTT-3.1.2-3",
	"will-flags":         "MQTT-3.1.2-11, MQTT-3.1.2-12, MQTT-3.1.2-13",
	"protocol-version":   "MQTT-3.1.2-1, MQTT-3.1.2-2",
	"will-properties":    "section 3.1.3.2",
	"connack-flags":      "MQTT-3.2.2-1",
	"sub-options":        "MQTT-3.8.3-5, section 3.8.3.1",
	"utf8":               "MQTT-1.5.4-1, MQTT-1.5.4-2",
	"varint":             "MQTT-1.5.5-1",
	"trailing":           "section 2.1.4",
	"past-end":           "section 2.2.2.1",
	"duplicate-property": "section 2.2.2.2",
	"disconnect-short":   "section 3.14.2.1",
	"multi-sub-id":       "section 3.3.4",
}

// weRefuse names the row that explains why this package refuses a packet
// paho accepts, or "".
func weRefuse(err error) string {
	if errors.Is(err, UnsupportedProtocolVersion) {
		return "protocol-version"
	}
	var me *MalformedError
	if !errors.As(err, &me) {
		return ""
	}
	switch me.Clause {
	case "MQTT-2.1.3-1":
		return "fixed-flags"
	case "MQTT-3.3.1-4":
		return "publish-qos3"
	case "MQTT-3.1.2-3":
		return "connect-reserved"
	case "MQTT-3.1.2-11", "MQTT-3.1.2-12", "MQTT-3.1.2-13":
		return "will-flags"
	case "MQTT-3.2.2-1":
		return "connack-flags"
	case "MQTT-3.8.3-5":
		return "sub-options"
	case "MQTT-1.5.4-1":
		return "utf8"
	case "MQTT-1.5.5-1":
		return "varint"
	}
	switch {
	case strings.Contains(me.Msg, "Maximum QoS 3"), strings.Contains(me.Msg, "Retain Handling 3"):
		return "sub-options"
	case strings.Contains(me.Msg, "not allowed in Will Properties"):
		return "will-properties"
	case strings.Contains(me.Msg, "bytes the packet does not use"):
		return "trailing"
	case strings.Contains(me.Msg, "runs past the end"):
		return "past-end"
	case strings.Contains(me.Msg, "appears more than once"):
		return "duplicate-property"
	}
	return ""
}

// pahoRefuses names the row that explains why paho refuses a packet this
// package accepts, or "".
func pahoRefuses(p Packet) string {
	if d, ok := p.(*Disconnect); ok && d.ReasonCode == 0 && d.Properties.Empty() {
		return "disconnect-short"
	}
	return ""
}

// pahoDecode runs paho's decoder, turning a panic into an error.
func pahoDecode(raw []byte) (cp *packets.ControlPacket, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("paho panicked: %v", r)
		}
	}()
	return packets.ReadPacket(bytes.NewReader(raw))
}

func pahoProps(p *Properties) *packets.Properties {
	pp := &packets.Properties{}
	byteProp := func(id PropertyID, v byte) *byte {
		if p.Present.Has(id) {
			return &v
		}
		return nil
	}
	u16Prop := func(id PropertyID, v uint16) *uint16 {
		if p.Present.Has(id) {
			return &v
		}
		return nil
	}
	u32Prop := func(id PropertyID, v uint32) *uint32 {
		if p.Present.Has(id) {
			return &v
		}
		return nil
	}
	str := func(id PropertyID, v string) string {
		if p.Present.Has(id) {
			return v
		}
		return ""
	}
	pp.PayloadFormat = byteProp(PropPayloadFormatIndicator, p.PayloadFormatIndicator)
	pp.MessageExpiry = u32Prop(PropMessageExpiryInterval, p.MessageExpiryInterval)
	pp.ContentType = str(PropContentType, p.ContentType)
	pp.ResponseTopic = str(PropResponseTopic, p.ResponseTopic)
	if p.Present.Has(PropCorrelationData) {
		pp.CorrelationData = p.CorrelationData
	}
	if n := len(p.SubscriptionIdentifiers); n > 0 {
		id := int(p.SubscriptionIdentifiers[n-1]) // multi-sub-id
		pp.SubscriptionIdentifier = &id
	}
	pp.SessionExpiryInterval = u32Prop(PropSessionExpiryInterval, p.SessionExpiryInterval)
	pp.AssignedClientID = str(PropAssignedClientIdentifier, p.AssignedClientIdentifier)
	pp.ServerKeepAlive = u16Prop(PropServerKeepAlive, p.ServerKeepAlive)
	pp.AuthMethod = str(PropAuthenticationMethod, p.AuthenticationMethod)
	if p.Present.Has(PropAuthenticationData) {
		pp.AuthData = p.AuthenticationData
	}
	pp.RequestProblemInfo = byteProp(PropRequestProblemInformation, p.RequestProblemInformation)
	pp.WillDelayInterval = u32Prop(PropWillDelayInterval, p.WillDelayInterval)
	pp.RequestResponseInfo = byteProp(PropRequestResponseInformation, p.RequestResponseInformation)
	pp.ResponseInfo = str(PropResponseInformation, p.ResponseInformation)
	pp.ServerReference = str(PropServerReference, p.ServerReference)
	pp.ReasonString = str(PropReasonString, p.ReasonString)
	pp.ReceiveMaximum = u16Prop(PropReceiveMaximum, p.ReceiveMaximum)
	pp.TopicAliasMaximum = u16Prop(PropTopicAliasMaximum, p.TopicAliasMaximum)
	pp.TopicAlias = u16Prop(PropTopicAlias, p.TopicAlias)
	pp.MaximumQOS = byteProp(PropMaximumQoS, p.MaximumQoS)
	pp.RetainAvailable = byteProp(PropRetainAvailable, p.RetainAvailable)
	for _, u := range p.UserProperties {
		pp.User = append(pp.User, packets.User{Key: u.Key, Value: u.Value})
	}
	pp.MaximumPacketSize = u32Prop(PropMaximumPacketSize, p.MaximumPacketSize)
	pp.WildcardSubAvailable = byteProp(PropWildcardSubscriptionAvailable, p.WildcardSubscriptionAvailable)
	pp.SubIDAvailable = byteProp(PropSubscriptionIdentifierAvailable, p.SubscriptionIdentifierAvailable)
	pp.SharedSubAvailable = byteProp(PropSharedSubscriptionAvailable, p.SharedSubscriptionAvailable)
	return pp
}

func codes(rc []ReasonCode) []byte {
	b := make([]byte, len(rc))
	for i, c := range rc {
		b[i] = byte(c)
	}
	return b
}

// toPaho expresses a packet decoded here as paho's decoder would hold it.
func toPaho(p Packet) packets.Packet {
	switch p := p.(type) {
	case *Connect:
		c := &packets.Connect{
			ProtocolName: p.Version.protocolName(), ProtocolVersion: byte(p.Version),
			CleanStart: p.CleanStart, KeepAlive: p.KeepAlive, Properties: pahoProps(&p.Properties),
			ClientID: p.ClientID, WillFlag: p.WillFlag, WillQOS: p.WillQoS, WillRetain: p.WillRetain,
			WillTopic: p.WillTopic, WillMessage: p.WillPayload,
			UsernameFlag: p.UsernameFlag, Username: p.Username, PasswordFlag: p.PasswordFlag, Password: p.Password,
		}
		if p.WillFlag {
			c.WillProperties = pahoProps(&p.WillProperties)
		}
		return c
	case *Connack:
		return &packets.Connack{SessionPresent: p.SessionPresent, ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	case *Publish:
		return &packets.Publish{Duplicate: p.Dup, QoS: p.QoS, Retain: p.Retain, Topic: p.Topic,
			PacketID: p.PacketID, Properties: pahoProps(&p.Properties), Payload: p.Payload}
	case *Puback:
		return &packets.Puback{PacketID: p.PacketID, ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	case *Pubrec:
		return &packets.Pubrec{PacketID: p.PacketID, ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	case *Pubrel:
		return &packets.Pubrel{PacketID: p.PacketID, ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	case *Pubcomp:
		return &packets.Pubcomp{PacketID: p.PacketID, ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	case *Subscribe:
		s := &packets.Subscribe{PacketID: p.PacketID, Properties: pahoProps(&p.Properties)}
		for _, sub := range p.Subscriptions {
			s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: sub.Filter, QoS: sub.QoS,
				NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling})
		}
		return s
	case *Suback:
		return &packets.Suback{PacketID: p.PacketID, Properties: pahoProps(&p.Properties), Reasons: codes(p.ReasonCodes)}
	case *Unsubscribe:
		return &packets.Unsubscribe{PacketID: p.PacketID, Properties: pahoProps(&p.Properties), Topics: p.Filters}
	case *Unsuback:
		return &packets.Unsuback{PacketID: p.PacketID, Properties: pahoProps(&p.Properties), Reasons: codes(p.ReasonCodes)}
	case *Pingreq:
		return &packets.Pingreq{}
	case *Pingresp:
		return &packets.Pingresp{}
	case *Disconnect:
		return &packets.Disconnect{ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	case *Auth:
		return &packets.Auth{ReasonCode: byte(p.ReasonCode), Properties: pahoProps(&p.Properties)}
	}
	panic("unknown packet")
}

// readCorpusFile parses a "go test fuzz v1" file of (byte, []byte).
func readCorpusFile(t *testing.T, path string) (byte, []byte, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" {
		return 0, nil, false
	}
	b, ok1 := strings.CutPrefix(lines[1], "byte(")
	raw, ok2 := strings.CutPrefix(lines[2], "[]byte(")
	if !ok1 || !ok2 {
		return 0, nil, false
	}
	r, err := strconv.Unquote(strings.TrimSuffix(b, ")"))
	if err != nil || len(r) != 1 {
		// byte literals are rune-quoted; accept both.
		if c, _, _, err := strconv.UnquoteChar(strings.Trim(strings.TrimSuffix(b, ")"), "'"), '\''); err == nil {
			r = string(rune(c))
		} else {
			return 0, nil, false
		}
	}
	s, err := strconv.Unquote(strings.TrimSuffix(raw, ")"))
	if err != nil {
		return 0, nil, false
	}
	return r[0], []byte(s), true
}

func TestPahoDifferential(t *testing.T) {
	type input struct {
		name string
		raw  []byte
	}
	var inputs []input
	for _, tc := range goldenCases {
		if tc.v == V5 && tc.maxSize == 0 {
			inputs = append(inputs, input{tc.name, tc.raw})
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecode", "*"))
	for _, f := range files {
		if ver, raw, ok := readCorpusFile(t, f); ok && fuzzVersion(ver) == V5 {
			inputs = append(inputs, input{f, raw})
		}
	}
	seen := map[string]int{}
	for _, in := range inputs {
		ours, _, err := Decode(in.raw, V5, 0)
		cp, perr := pahoDecode(in.raw)
		switch {
		case err != nil && perr != nil:
			continue // both refuse
		case err != nil:
			row := weRefuse(err)
			if row == "" {
				t.Errorf("%s: we refuse (%v), paho accepts; no row explains it", in.name, err)
			}
			seen[row]++
		case perr != nil:
			row := pahoRefuses(ours)
			if row == "" {
				t.Errorf("%s: paho refuses (%v), we accept %#v; no row explains it", in.name, perr, ours)
			}
			seen[row]++
		default:
			want := toPaho(ours)
			if diff := cmp.Diff(want, cp.Content, cmpOpts...); diff != "" {
				t.Errorf("%s: decoded fields differ (-ours +paho):\n%s", in.name, diff)
			}
			if pub, ok := ours.(*Publish); ok && len(pub.Properties.SubscriptionIdentifiers) > 1 {
				seen["multi-sub-id"]++
			}
		}
	}
	for row := range pahoDisagreements {
		if seen[row] == 0 {
			t.Errorf("disagreement %q is not exercised by any input", row)
		}
	}
	t.Logf("%d inputs; disagreements seen: %v", len(inputs), seen)
}
