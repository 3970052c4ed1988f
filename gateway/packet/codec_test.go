package packet

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpOpts compare decoded packets: a nil and an empty slice are the same
// packet on the wire.
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

// outcome classifies a decode error as in golden.fail.
func outcome(err error) string {
	var me *MalformedError
	switch {
	case err == nil:
		return decodes
	case errors.As(err, &me):
		if !errors.Is(err, ErrMalformed) {
			return "MalformedError not matching ErrMalformed"
		}
		if me.Code == ProtocolError {
			return protocolRC
		}
		return malformedRC
	case errors.Is(err, io.ErrUnexpectedEOF):
		return truncated
	case errors.Is(err, PacketTooLarge):
		return tooLarge
	case errors.Is(err, UnsupportedProtocolVersion):
		return unsupported
	}
	return "unexpected error " + err.Error()
}

func TestGoldenDecode(t *testing.T) {
	names := map[string]bool{}
	for _, tc := range goldenCases {
		if names[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			p, n, err := Decode(tc.raw, tc.v, tc.maxSize)
			if got := outcome(err); got != tc.fail {
				t.Fatalf("Decode: got %s (%v), want %q", got, err, tc.fail)
			}
			if err != nil {
				if p != nil || n != 0 {
					t.Fatalf("Decode failed but returned %v, %d", p, n)
				}
				return
			}
			if n != len(tc.raw) {
				t.Errorf("Decode used %d bytes of %d", n, len(tc.raw))
			}
			if diff := cmp.Diff(tc.pkt, p, cmpOpts...); diff != "" {
				t.Fatalf("Decode mismatch (-want +got):\n%s", diff)
			}
			// A trailing second packet is left alone.
			if _, n2, err := Decode(append(bytes.Clone(tc.raw), 0xC0, 0x00), tc.v, tc.maxSize); err != nil || n2 != n {
				t.Errorf("Decode with trailing packet: n=%d err=%v", n2, err)
			}
			v := tc.v
			if c, ok := p.(*Connect); ok {
				v = c.Version
			}
			if got := Validate(p, v, tc.opts); got != tc.invalid {
				t.Errorf("Validate = %v, want %v", got, tc.invalid)
			}
		})
	}
}

func TestGoldenReadPacket(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []io.Reader{
				bytes.NewReader(tc.raw),
				iotest.OneByteReader(bytes.NewReader(tc.raw)), // no ReadByte
				iotest.HalfReader(bytes.NewReader(tc.raw)),
			} {
				p, err := ReadPacket(r, tc.v, tc.maxSize)
				if got := outcome(err); got != tc.fail {
					t.Fatalf("ReadPacket(%T): got %s (%v), want %q", r, got, err, tc.fail)
				}
				if err == nil {
					if diff := cmp.Diff(tc.pkt, p, cmpOpts...); diff != "" {
						t.Fatalf("ReadPacket mismatch (-want +got):\n%s", diff)
					}
				}
			}
		})
	}
}

func TestGoldenEncode(t *testing.T) {
	for _, tc := range goldenCases {
		if tc.fail != decodes {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			want := tc.raw
			if tc.canon != nil {
				want = tc.canon
			}
			v := tc.v
			if c, ok := tc.pkt.(*Connect); ok {
				v = c.Version
			}
			prefix := []byte("prefix")
			got, err := tc.pkt.Append(bytes.Clone(prefix), v)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
				t.Fatalf("Append:\n got % x\nwant % x", got[len(prefix):], want)
			}
			if n, err := tc.pkt.Size(v); err != nil || n != len(want) {
				t.Errorf("Size = %d, %v; want %d", n, err, len(want))
			}
		})
	}
}

// TestTruncatedPrefixes cuts every valid golden packet short at each byte.
func TestTruncatedPrefixes(t *testing.T) {
	for _, tc := range goldenCases {
		if tc.fail != decodes {
			continue
		}
		for i := range len(tc.raw) {
			_, _, err := Decode(tc.raw[:i], tc.v, 0)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s: Decode of %d/%d bytes: %v", tc.name, i, len(tc.raw), err)
			}
			_, err = ReadPacket(bytes.NewReader(tc.raw[:i]), tc.v, 0)
			want := io.ErrUnexpectedEOF
			if i == 0 {
				want = io.EOF
			}
			if err != want {
				t.Errorf("%s: ReadPacket of %d/%d bytes: %v", tc.name, i, len(tc.raw), err)
			}
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	big := strings.Repeat("x", 65536)
	withProps := Properties{Present: set(PropMessageExpiryInterval)}
	for _, tc := range []struct {
		name string
		p    Packet
		v    Version
	}{
		{"publish/v311/properties", &Publish{Topic: "t", Properties: withProps}, V311},
		{"publish/qos3", &Publish{Topic: "t", QoS: 3, PacketID: 1}, V5},
		{"publish/qos0-packet-id", &Publish{Topic: "t", PacketID: 1}, V311},
		{"publish/topic-too-long", &Publish{Topic: big}, V311},
		{"publish/property-not-allowed", &Publish{Topic: "t", Properties: Properties{Present: set(PropSessionExpiryInterval)}}, V5},
		{"publish/user-property-too-long", &Publish{Topic: "t", Properties: Properties{UserProperties: []UserProperty{{big, ""}}}}, V5},
		{"publish/subscription-id-too-large", &Publish{Topic: "t", Properties: Properties{SubscriptionIdentifiers: []uint32{1 << 28}}}, V5},
		{"puback/v311/reason", &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers}, V311},
		{"disconnect/v311/reason", &Disconnect{ReasonCode: ServerShuttingDown}, V311},
		{"auth/v311", &Auth{}, V311},
		{"unsuback/v311/codes", &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{0}}, V311},
		{"subscribe/v311/no-local", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", NoLocal: true}}}, V311},
		{"subscribe/retain-handling-3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}, V5},
		{"connect/will-without-flag", &Connect{WillTopic: "t"}, V311},
		{"connect/version-mismatch", &Connect{Version: V5}, V311},
		{"connect/v311/password-without-user", &Connect{PasswordFlag: true}, V311},
		{"connect/will-property-not-allowed", &Connect{WillFlag: true, WillProperties: Properties{Present: set(PropSessionExpiryInterval)}}, V5},
		{"pingreq/unknown-version", &Pingreq{}, 9},
	} {
		if _, err := tc.p.Append(nil, tc.v); !errors.Is(err, ErrEncode) {
			t.Errorf("%s: Append error %v, want ErrEncode", tc.name, err)
		}
		if _, err := tc.p.Size(tc.v); !errors.Is(err, ErrEncode) {
			t.Errorf("%s: Size error %v, want ErrEncode", tc.name, err)
		}
	}
}

func TestEncodeLargeRemainingLength(t *testing.T) {
	p := &Publish{Topic: "t", Payload: make([]byte, 2_097_152)}
	b, err := p.Append(nil, V5)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := Decode(b, V5, 0)
	if err != nil || n != len(b) || len(got.(*Publish).Payload) != len(p.Payload) {
		t.Fatalf("Decode: n=%d err=%v", n, err)
	}
	if b[1]&0x80 == 0 || b[2]&0x80 == 0 || b[3]&0x80 == 0 || b[4]&0x80 != 0 {
		t.Fatalf("expected a four-byte remaining length, got % x", b[:5])
	}
}

func TestReasonCodeNames(t *testing.T) {
	for c := range 256 {
		rc := ReasonCode(c)
		name := rc.String()
		_, known := reasonNames[rc]
		if known == strings.HasPrefix(name, "reason code 0x") {
			t.Errorf("ReasonCode(%#x).String() = %q", c, name)
		}
		if rc.Error() != "packet: "+name {
			t.Errorf("ReasonCode(%#x).Error() = %q", c, rc.Error())
		}
		for typ := range allowedReasons {
			if rc.AllowedIn(typ) && !known {
				t.Errorf("unnamed reason %#x allowed in %v", c, typ)
			}
		}
	}
	if PacketTooLarge.String() != "packet too large" || !PacketTooLarge.Failure() || Success.Failure() {
		t.Error("spot checks failed")
	}
	if code, ok := CodeOf(malformed(PUBLISH, "", "x")); !ok || code != MalformedPacket {
		t.Error("CodeOf(MalformedError)")
	}
	if code, ok := CodeOf(TopicNameInvalid); !ok || code != TopicNameInvalid {
		t.Error("CodeOf(ReasonCode)")
	}
	if _, ok := CodeOf(io.EOF); ok {
		t.Error("CodeOf(io.EOF)")
	}
	for rc, want := range map[ReasonCode]byte{
		Success: 0, UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2,
		ServerUnavailable: 3, BadUserNameOrPassword: 4, NotAuthorized: 5,
		QuotaExceeded: 3,
	} {
		if got, ok := V3ConnectReturnCode(rc); !ok || got != want {
			t.Errorf("V3ConnectReturnCode(%v) = %d, %v", rc, got, ok)
		}
	}
	if _, ok := V3ConnectReturnCode(MalformedPacket); ok {
		t.Error("V3ConnectReturnCode(MalformedPacket) should have no 3.1.1 code")
	}
}

func TestPropertyTable(t *testing.T) {
	known := 0
	for id := range 256 {
		p := PropertyID(id)
		if !p.Known() {
			if p.DataType() != 0 || p.AllowedIn(PUBLISH) || p.AllowedInWill() {
				t.Errorf("unknown %v has a type or packets", p)
			}
			continue
		}
		known++
		in := 0
		for typ := CONNECT; typ <= AUTH; typ++ {
			if p.AllowedIn(typ) {
				in++
			}
		}
		if in == 0 && !p.AllowedInWill() {
			t.Errorf("%v allowed nowhere", p)
		}
	}
	if known != 27 {
		t.Errorf("%d known properties, want 27", known)
	}
	if PropTopicAlias.String() != "Topic Alias" || PropTopicAlias.DataType() != TypeTwoByteInteger ||
		!PropWillDelayInterval.AllowedInWill() || PropWillDelayInterval.AllowedIn(CONNECT) ||
		!PropSubscriptionIdentifier.Repeatable(PUBLISH) || PropSubscriptionIdentifier.Repeatable(SUBSCRIBE) {
		t.Error("spot checks failed")
	}
	if PINGREQ.String() != "PINGREQ" || V311.String() != "3.1.1" || Type(16).String() != "Type(16)" {
		t.Error("names")
	}
}

func TestValidateTopics(t *testing.T) {
	for _, tc := range []struct {
		s           string
		name, filt5 bool // valid as a topic name, as an MQTT 5.0 filter
		filt311     bool
	}{
		{"a/b", true, true, true},
		{"/", true, true, true},
		{"", false, false, false},
		{"a/+", false, true, true},
		{"+", false, true, true},
		{"#", false, true, true},
		{"a/#", false, true, true},
		{"a/#/b", false, false, false},
		{"a#", false, false, false},
		{"a/b+", false, false, false},
		{"+/+/#", false, true, true},
		{"$SYS/x", true, true, true},
		{"$share/g/a/+", false, true, true},
		{"$share/g/", true, false, false},
		{"$share//a", true, false, false},
		{"$share/g+/a", false, false, false},
		{"$share/g", true, false, false},
		{"a\x00b", false, false, false},
		{"caf\xc3", false, false, false},
	} {
		if got := ValidateTopicName(tc.s) == nil; got != tc.name {
			t.Errorf("ValidateTopicName(%q) ok=%v", tc.s, got)
		}
		if got := ValidateTopicFilter(tc.s, V5) == nil; got != tc.filt5 {
			t.Errorf("ValidateTopicFilter(%q, V5) ok=%v", tc.s, got)
		}
		if got := ValidateTopicFilter(tc.s, V311) == nil; got != tc.filt311 {
			t.Errorf("ValidateTopicFilter(%q, V311) ok=%v", tc.s, got)
		}
	}
}

func TestMalformedErrorText(t *testing.T) {
	_, _, err := Decode(frame(0x41, u16(1)), V311, 0)
	if got := err.Error(); got != "packet: malformed PUBACK: reserved flags 0x1 [MQTT-2.1.3-1]" {
		t.Errorf("Error() = %q", got)
	}
}
