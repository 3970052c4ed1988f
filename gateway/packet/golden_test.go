package packet

// The golden byte table: raw packets of every type and version, valid and
// not, shared by the decode, encode, validation, fuzz-seed and paho tests.

// Outcomes of decoding a golden case.
const (
	decodes     = ""            // decodes to pkt
	malformedRC = "malformed"   // *MalformedError, Code 0x81
	protocolRC  = "protocol"    // *MalformedError, Code 0x82
	unsupported = "unsupported" // UnsupportedProtocolVersion
	tooLarge    = "too-large"   // PacketTooLarge
	truncated   = "truncated"   // io.ErrUnexpectedEOF
)

type golden struct {
	name string
	v    Version
	raw  []byte
	// fail is the expected decode outcome; decodes when empty.
	fail string
	// pkt is the decoded packet when fail is empty.
	pkt Packet
	// canon is the encoding of pkt when raw is a valid but not canonical
	// form (nil: raw itself).
	canon []byte
	// maxSize is passed to Decode.
	maxSize uint32
	// invalid is what Validate returns for the decoded packet.
	invalid error
	// opts are the validation options.
	opts ValidateOptions
}

// cat flattens bytes, ints (as one byte) and byte slices.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = append(b, byte(p))
		case byte:
			b = append(b, p)
		case []byte:
			b = append(b, p...)
		default:
			panic("cat: bad part")
		}
	}
	return b
}

// frame builds a packet from its first byte and body, computing the
// remaining length.
func frame(first byte, body ...any) []byte {
	bb := cat(body...)
	return append(appendVarint([]byte{first}, uint32(len(bb))), bb...)
}

// s is a length-prefixed string.
func s(str string) []byte { return appendString(nil, str) }

func u16(v uint16) []byte { return appendU16(nil, v) }

func u32(v uint32) []byte { return appendU32(nil, v) }

// props is a property block with its length.
func props(b ...any) []byte {
	bb := cat(b...)
	return append(appendVarint(nil, uint32(len(bb))), bb...)
}

func set(ids ...PropertyID) PropertySet {
	var p PropertySet
	for _, id := range ids {
		p.Add(id)
	}
	return p
}

var goldenCases = []golden{
	// ---------- CONNECT ----------
	{name: "connect/v311/minimal", v: V311,
		raw: frame(0x10, s("MQTT"), 4, 0x02, u16(60), s("client")),
		pkt: &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "client"}},
	{name: "connect/v31/minimal", v: V31,
		raw: frame(0x10, s("MQIsdp"), 3, 0x02, u16(30), s("c1")),
		pkt: &Connect{Version: V31, CleanStart: true, KeepAlive: 30, ClientID: "c1"}},
	{name: "connect/v311/will-user-password", v: V311,
		raw: frame(0x10, s("MQTT"), 4, 0xEE, u16(10), s("id"), s("will/t"), s("bye"), s("user"), s("pw")),
		pkt: &Connect{Version: V311, CleanStart: true, KeepAlive: 10, ClientID: "id",
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "will/t", WillPayload: []byte("bye"),
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")}},
	{name: "connect/v311/unknown-version-state", v: VersionUnknown,
		raw: frame(0x10, s("MQTT"), 4, 0x00, u16(0), s("x")),
		pkt: &Connect{Version: V311, ClientID: "x"}},
	{name: "connect/v5/properties", v: V5,
		raw: frame(0x10, s("MQTT"), 5, 0xC2, u16(30), props(
			0x11, u32(3600), 0x15, s("SCRAM"), 0x16, s("data"), 0x17, 0, 0x19, 1,
			0x21, u16(10), 0x22, u16(5), 0x26, s("k"), s("v"), 0x27, u32(1<<20)),
			s("c5"), s("u"), s("p")),
		pkt: &Connect{Version: V5, CleanStart: true, KeepAlive: 30, ClientID: "c5",
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"),
			Properties: Properties{
				Present: set(PropSessionExpiryInterval, PropAuthenticationMethod, PropAuthenticationData,
					PropRequestProblemInformation, PropRequestResponseInformation, PropReceiveMaximum,
					PropTopicAliasMaximum, PropMaximumPacketSize),
				SessionExpiryInterval: 3600, AuthenticationMethod: "SCRAM", AuthenticationData: []byte("data"),
				RequestProblemInformation: 0, RequestResponseInformation: 1, ReceiveMaximum: 10,
				TopicAliasMaximum: 5, MaximumPacketSize: 1 << 20,
				UserProperties: []UserProperty{{"k", "v"}},
			}}},
	{name: "connect/v5/will-properties", v: V5,
		raw: frame(0x10, s("MQTT"), 5, 0x36, u16(0), props(), s("w"), props(
			0x01, 1, 0x02, u32(60), 0x03, s("text/plain"), 0x08, s("resp/t"), 0x09, s("corr"),
			0x18, u32(5), 0x26, s("a"), s("b"), 0x26, s("a"), s("c")),
			s("last/will"), s("gone")),
		pkt: &Connect{Version: V5, CleanStart: true, ClientID: "w",
			WillFlag: true, WillQoS: 2, WillRetain: true, WillTopic: "last/will", WillPayload: []byte("gone"),
			WillProperties: Properties{
				Present: set(PropPayloadFormatIndicator, PropMessageExpiryInterval, PropContentType,
					PropResponseTopic, PropCorrelationData, PropWillDelayInterval),
				PayloadFormatIndicator: 1, MessageExpiryInterval: 60, ContentType: "text/plain",
				ResponseTopic: "resp/t", CorrelationData: []byte("corr"), WillDelayInterval: 5,
				UserProperties: []UserProperty{{"a", "b"}, {"a", "c"}},
			}}},
	{name: "connect/v5/empty-client-id", v: V5,
		raw: frame(0x10, s("MQTT"), 5, 0x00, u16(60), props(), s("")),
		pkt: &Connect{Version: V5, KeepAlive: 60}},
	{name: "connect/v5/password-without-user", v: V5,
		raw: frame(0x10, s("MQTT"), 5, 0x42, u16(60), props(), s("id"), s("secret")),
		pkt: &Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "id", PasswordFlag: true, Password: []byte("secret")}},
	{name: "connect/v311/client-id-with-space", v: V311,
		raw: frame(0x10, s("MQTT"), 4, 0x02, u16(60), s("my client é")),
		pkt: &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "my client é"}},

	{name: "connect/v311/reserved-flag", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x03, u16(60), s("c"))},
	{name: "connect/v5/reserved-flag", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x01, u16(60), props(), s("c"))},
	{name: "connect/v311/will-qos-without-will", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x0A, u16(60), s("c"))},
	{name: "connect/v5/will-retain-without-will", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x22, u16(60), props(), s("c"))},
	{name: "connect/v311/will-qos-3", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x1E, u16(60), s("c"), s("t"), s("m"))},
	{name: "connect/v5/will-qos-3", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x1E, u16(60), props(), s("c"), props(), s("t"), s("m"))},
	{name: "connect/v311/password-without-user", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x42, u16(60), s("c"), s("p"))},
	{name: "connect/unknown-level", v: VersionUnknown, fail: unsupported,
		raw: frame(0x10, s("MQTT"), 6, 0x02, u16(60), s("c"))},
	{name: "connect/v5/level-6", v: V5, fail: unsupported,
		raw: frame(0x10, s("MQTT"), 6, 0x02, u16(60), props(), s("c"))},
	{name: "connect/wrong-name", v: VersionUnknown, fail: unsupported,
		raw: frame(0x10, s("MQTX"), 4, 0x02, u16(60), s("c"))},
	{name: "connect/mqisdp-level-4", v: VersionUnknown, fail: unsupported,
		raw: frame(0x10, s("MQIsdp"), 4, 0x02, u16(60), s("c"))},
	{name: "connect/v311/trailing-bytes", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x02, u16(60), s("c"), 0)},
	{name: "connect/v311/client-id-past-end", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x02, u16(60), u16(10), "abc"[0])},
	{name: "connect/v311/missing-password", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0xC2, u16(60), s("c"), s("u"))},
	{name: "connect/v311/invalid-utf8-client-id", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x02, u16(60), u16(2), 0xC3, 0x28)},
	{name: "connect/v311/nul-in-user", v: V311, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 4, 0x82, u16(60), s("c"), s("a\x00b"))},
	{name: "connect/v5/duplicate-property", v: V5, fail: protocolRC,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), props(0x11, u32(1), 0x11, u32(2)), s("c"))},
	{name: "connect/v5/property-not-allowed", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), props(0x23, u16(1)), s("c"))},
	{name: "connect/v5/will-property-not-allowed", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x06, u16(60), props(), s("c"), props(0x11, u32(1)), s("t"), s("m"))},
	{name: "connect/v5/unknown-property", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), props(0x7F, 0), s("c"))},
	{name: "connect/v5/property-length-past-end", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), 0x20, 0x11, u32(1))},
	{name: "connect/v5/property-value-past-property-length", v: V5, fail: malformedRC,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), 0x03, 0x11, u32(1), s("c"))},
	{name: "connect/v5/receive-maximum-0", v: V5, invalid: ProtocolError,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), props(0x21, u16(0)), s("c")),
		pkt: &Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "c",
			Properties: Properties{Present: set(PropReceiveMaximum)}}},
	{name: "connect/v5/auth-data-without-method", v: V5, invalid: ProtocolError,
		raw: frame(0x10, s("MQTT"), 5, 0x02, u16(60), props(0x16, s("x")), s("c")),
		pkt: &Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "c",
			Properties: Properties{Present: set(PropAuthenticationData), AuthenticationData: []byte("x")}}},
	{name: "connect/v311/empty-id-persistent", v: V311, invalid: ClientIdentifierNotValid,
		raw: frame(0x10, s("MQTT"), 4, 0x00, u16(60), s("")),
		pkt: &Connect{Version: V311, KeepAlive: 60}},
	{name: "connect/v31/client-id-too-long", v: V31, invalid: ClientIdentifierNotValid,
		raw: frame(0x10, s("MQIsdp"), 3, 0x02, u16(60), s("abcdefghijklmnopqrstuvwx")),
		pkt: &Connect{Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "abcdefghijklmnopqrstuvwx"}},
	{name: "connect/v311/will-topic-wildcard", v: V311, invalid: TopicNameInvalid,
		raw: frame(0x10, s("MQTT"), 4, 0x06, u16(60), s("c"), s("a/#"), s("")),
		pkt: &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "c", WillFlag: true, WillTopic: "a/#", WillPayload: []byte{}}},

	// ---------- CONNACK ----------
	{name: "connack/v311/accepted-session-present", v: V311,
		raw: frame(0x20, 1, 0), pkt: &Connack{SessionPresent: true}},
	{name: "connack/v31/refused", v: V31,
		raw: frame(0x20, 0, 5), pkt: &Connack{ReasonCode: 5}},
	{name: "connack/v5/properties", v: V5, opts: ValidateOptions{FromServer: true},
		raw: frame(0x20, 0, 0, props(
			0x11, u32(0), 0x12, s("auto-1"), 0x13, u16(60), 0x15, s("m"), 0x16, s("d"),
			0x1A, s("resp"), 0x1C, s("other"), 0x1F, s("ok"), 0x21, u16(100), 0x22, u16(10),
			0x24, 1, 0x25, 0, 0x26, s("x"), s("y"), 0x27, u32(65536), 0x28, 1, 0x29, 0, 0x2A, 1)),
		pkt: &Connack{Properties: Properties{
			Present: set(PropSessionExpiryInterval, PropAssignedClientIdentifier, PropServerKeepAlive,
				PropAuthenticationMethod, PropAuthenticationData, PropResponseInformation, PropServerReference,
				PropReasonString, PropReceiveMaximum, PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable,
				PropMaximumPacketSize, PropWildcardSubscriptionAvailable, PropSubscriptionIdentifierAvailable,
				PropSharedSubscriptionAvailable),
			AssignedClientIdentifier: "auto-1", ServerKeepAlive: 60, AuthenticationMethod: "m",
			AuthenticationData: []byte("d"), ResponseInformation: "resp", ServerReference: "other",
			ReasonString: "ok", ReceiveMaximum: 100, TopicAliasMaximum: 10, MaximumQoS: 1,
			MaximumPacketSize: 65536, WildcardSubscriptionAvailable: 1, SharedSubscriptionAvailable: 1,
			UserProperties: []UserProperty{{"x", "y"}},
		}}},
	{name: "connack/v5/refused", v: V5,
		raw: frame(0x20, 0, 0x84, props()), pkt: &Connack{ReasonCode: UnsupportedProtocolVersion}},
	{name: "connack/v311/reserved-flags", v: V311, fail: malformedRC, raw: frame(0x20, 2, 0)},
	{name: "connack/v5/reserved-flags", v: V5, fail: malformedRC, raw: frame(0x20, 0x80, 0, props())},
	{name: "connack/v311/too-long", v: V311, fail: malformedRC, raw: frame(0x20, 0, 0, 0)},
	{name: "connack/v5/missing-properties", v: V5, fail: malformedRC, raw: frame(0x20, 0, 0)},
	{name: "connack/v5/maximum-qos-2", v: V5, invalid: ProtocolError,
		raw: frame(0x20, 0, 0, props(0x24, 2)),
		pkt: &Connack{Properties: Properties{Present: set(PropMaximumQoS), MaximumQoS: 2}}},
	{name: "connack/v5/session-present-on-failure", v: V5, invalid: ProtocolError,
		raw: frame(0x20, 1, 0x80, props()),
		pkt: &Connack{SessionPresent: true, ReasonCode: UnspecifiedError}},
	{name: "connack/v311/return-code-6", v: V311, invalid: ProtocolError,
		raw: frame(0x20, 0, 6), pkt: &Connack{ReasonCode: 6}},

	// ---------- PUBLISH ----------
	{name: "publish/v311/qos0", v: V311,
		raw: frame(0x30, s("a/b"), "hello"[0], "hello"[1]),
		pkt: &Publish{Topic: "a/b", Payload: []byte("he")}},
	{name: "publish/v311/qos1-dup-retain", v: V311,
		raw: frame(0x3B, s("a/b"), u16(7), []byte("payload")),
		pkt: &Publish{Dup: true, QoS: 1, Retain: true, Topic: "a/b", PacketID: 7, Payload: []byte("payload")}},
	{name: "publish/v31/qos2-empty-payload", v: V31,
		raw: frame(0x34, s("t"), u16(65535)),
		pkt: &Publish{QoS: 2, Topic: "t", PacketID: 65535}},
	{name: "publish/v5/qos0-no-properties", v: V5,
		raw: frame(0x30, s("t"), props(), []byte("x")),
		pkt: &Publish{Topic: "t", Payload: []byte("x")}},
	{name: "publish/v5/qos2-properties", v: V5,
		opts: ValidateOptions{FromServer: true, TopicAliasMaximum: 10},
		raw: frame(0x34, s("s/t"), u16(9), props(
			0x01, 1, 0x02, u32(30), 0x03, s("json"), 0x08, s("reply/to"), 0x09, s("id-1"),
			0x0B, 1, 0x0B, 0x80, 0x01, 0x23, u16(3), 0x26, s("k1"), s("v1"), 0x26, s("k2"), s("v2")),
			[]byte(`{"a":1}`)),
		pkt: &Publish{QoS: 2, Topic: "s/t", PacketID: 9, Payload: []byte(`{"a":1}`), Properties: Properties{
			Present:                set(PropPayloadFormatIndicator, PropMessageExpiryInterval, PropContentType, PropResponseTopic, PropCorrelationData, PropTopicAlias),
			PayloadFormatIndicator: 1, MessageExpiryInterval: 30, ContentType: "json", ResponseTopic: "reply/to",
			CorrelationData: []byte("id-1"), TopicAlias: 3, SubscriptionIdentifiers: []uint32{1, 128},
			UserProperties: []UserProperty{{"k1", "v1"}, {"k2", "v2"}},
		}}},
	{name: "publish/v5/topic-alias-only", v: V5, opts: ValidateOptions{TopicAliasMaximum: 1},
		raw: frame(0x30, s(""), props(0x23, u16(1)), []byte("x")),
		pkt: &Publish{Payload: []byte("x"), Properties: Properties{Present: set(PropTopicAlias), TopicAlias: 1}}},
	{name: "publish/v311/qos3", v: V311, fail: malformedRC, raw: frame(0x36, s("t"), u16(1))},
	{name: "publish/v5/qos3", v: V5, fail: malformedRC, raw: frame(0x36, s("t"), u16(1), props())},
	{name: "publish/v311/topic-past-end", v: V311, fail: malformedRC, raw: frame(0x30, u16(5), "ab"[0])},
	{name: "publish/v311/missing-packet-id", v: V311, fail: malformedRC, raw: frame(0x32, s("t"), 1)},
	{name: "publish/v311/invalid-utf8-topic", v: V311, fail: malformedRC, raw: frame(0x30, u16(2), 0xC3, 0x28)},
	{name: "publish/v5/surrogate-in-topic", v: V5, fail: malformedRC, raw: frame(0x30, u16(3), 0xED, 0xA0, 0x80, props())},
	{name: "publish/v5/nul-in-topic", v: V5, fail: malformedRC, raw: frame(0x30, s("a\x00"), props())},
	{name: "publish/v5/missing-properties", v: V5, fail: malformedRC, raw: frame(0x30, s("t"))},
	{name: "publish/v5/property-length-past-end", v: V5, fail: malformedRC,
		raw: frame(0x30, s("t"), 10, 0x23, u16(1))},
	{name: "publish/v5/duplicate-topic-alias", v: V5, fail: protocolRC,
		raw: frame(0x30, s("t"), props(0x23, u16(1), 0x23, u16(2)))},
	{name: "publish/v5/session-expiry-not-allowed", v: V5, fail: malformedRC,
		raw: frame(0x30, s("t"), props(0x11, u32(1)))},
	{name: "publish/v5/subscription-id-non-minimal", v: V5, fail: malformedRC,
		raw: frame(0x30, s("t"), props(0x0B, 0x81, 0x00))},
	{name: "publish/v5/subscription-id-5-bytes", v: V5, fail: malformedRC,
		raw: frame(0x30, s("t"), props(0x0B, 0x81, 0x81, 0x81, 0x81, 0x01))},
	{name: "publish/v5/user-property-value-missing", v: V5, fail: malformedRC,
		raw: frame(0x30, s("t"), props(0x26, s("k")))},
	{name: "publish/v311/packet-id-0", v: V311, invalid: ProtocolError,
		raw: frame(0x32, s("t"), u16(0)), pkt: &Publish{QoS: 1, Topic: "t"}},
	{name: "publish/v5/packet-id-0", v: V5, invalid: ProtocolError,
		raw: frame(0x34, s("t"), u16(0), props()), pkt: &Publish{QoS: 2, Topic: "t"}},
	{name: "publish/v311/dup-qos0", v: V311, invalid: ProtocolError,
		raw: frame(0x38, s("t")), pkt: &Publish{Dup: true, Topic: "t"}},
	{name: "publish/v311/wildcard-topic", v: V311, invalid: TopicNameInvalid,
		raw: frame(0x30, s("a/+")), pkt: &Publish{Topic: "a/+"}},
	{name: "publish/v311/empty-topic", v: V311, invalid: TopicNameInvalid,
		raw: frame(0x30, s("")), pkt: &Publish{}},
	{name: "publish/v5/empty-topic-no-alias", v: V5, invalid: ProtocolError,
		raw: frame(0x30, s(""), props()), pkt: &Publish{}},
	{name: "publish/v5/topic-alias-over-maximum", v: V5, invalid: TopicAliasInvalid,
		raw: frame(0x30, s("t"), props(0x23, u16(1))),
		pkt: &Publish{Topic: "t", Properties: Properties{Present: set(PropTopicAlias), TopicAlias: 1}}},
	{name: "publish/v5/subscription-id-from-client", v: V5, invalid: ProtocolError,
		raw: frame(0x30, s("t"), props(0x0B, 1)),
		pkt: &Publish{Topic: "t", Properties: Properties{SubscriptionIdentifiers: []uint32{1}}}},
	{name: "publish/v5/payload-not-utf8", v: V5, invalid: PayloadFormatInvalid,
		raw: frame(0x30, s("t"), props(0x01, 1), 0xFF),
		pkt: &Publish{Topic: "t", Payload: []byte{0xFF}, Properties: Properties{Present: set(PropPayloadFormatIndicator), PayloadFormatIndicator: 1}}},

	// ---------- PUBACK, PUBREC, PUBREL, PUBCOMP ----------
	{name: "puback/v311", v: V311, raw: frame(0x40, u16(1)), pkt: &Puback{PacketID: 1}},
	{name: "pubrec/v31", v: V31, raw: frame(0x50, u16(2)), pkt: &Pubrec{PacketID: 2}},
	{name: "pubrel/v311", v: V311, raw: frame(0x62, u16(3)), pkt: &Pubrel{PacketID: 3}},
	{name: "pubcomp/v311", v: V311, raw: frame(0x70, u16(4)), pkt: &Pubcomp{PacketID: 4}},
	{name: "puback/v5/short", v: V5, raw: frame(0x40, u16(1)), pkt: &Puback{PacketID: 1}},
	{name: "puback/v5/reason", v: V5, raw: frame(0x40, u16(1), 0x10), pkt: &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers}},
	{name: "puback/v5/reason-success-long", v: V5, raw: frame(0x40, u16(1), 0x00), canon: frame(0x40, u16(1)), pkt: &Puback{PacketID: 1}},
	{name: "pubrec/v5/reason-empty-properties", v: V5, raw: frame(0x50, u16(1), 0x80, props()), canon: frame(0x50, u16(1), 0x80),
		pkt: &Pubrec{PacketID: 1, ReasonCode: UnspecifiedError}},
	{name: "pubrel/v5/properties", v: V5, raw: frame(0x62, u16(5), 0x92, props(0x1F, s("gone"), 0x26, s("a"), s("b"))),
		pkt: &Pubrel{PacketID: 5, ReasonCode: PacketIdentifierNotFound, Properties: Properties{
			Present: set(PropReasonString), ReasonString: "gone", UserProperties: []UserProperty{{"a", "b"}}}}},
	{name: "pubcomp/v5/properties", v: V5, raw: frame(0x70, u16(6), 0x00, props(0x1F, s("fine"))),
		pkt: &Pubcomp{PacketID: 6, Properties: Properties{Present: set(PropReasonString), ReasonString: "fine"}}},
	{name: "puback/v311/flags", v: V311, fail: malformedRC, raw: frame(0x41, u16(1))},
	{name: "pubrel/v311/flags-0", v: V311, fail: malformedRC, raw: frame(0x60, u16(1))},
	{name: "pubrel/v5/flags-dup", v: V5, fail: malformedRC, raw: frame(0x6A, u16(1))},
	{name: "puback/v311/too-long", v: V311, fail: malformedRC, raw: frame(0x40, u16(1), 0)},
	{name: "puback/v311/too-short", v: V311, fail: malformedRC, raw: frame(0x40, 1)},
	{name: "pubrec/v5/property-not-allowed", v: V5, fail: malformedRC, raw: frame(0x50, u16(1), 0, props(0x11, u32(1)))},
	{name: "pubcomp/v5/trailing", v: V5, fail: malformedRC, raw: frame(0x70, u16(1), 0, props(), 0)},
	{name: "puback/v311/packet-id-0", v: V311, invalid: ProtocolError, raw: frame(0x40, u16(0)), pkt: &Puback{}},
	{name: "puback/v5/reason-not-allowed", v: V5, invalid: ProtocolError, raw: frame(0x40, u16(1), 0x05), pkt: &Puback{PacketID: 1, ReasonCode: 5}},
	{name: "pubrel/v5/reason-not-allowed", v: V5, invalid: ProtocolError, raw: frame(0x62, u16(1), 0x10), pkt: &Pubrel{PacketID: 1, ReasonCode: NoMatchingSubscribers}},

	// ---------- SUBSCRIBE, SUBACK ----------
	{name: "subscribe/v311/two-filters", v: V311,
		raw: frame(0x82, u16(10), s("a/+"), 1, s("b/#"), 2),
		pkt: &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/+", QoS: 1}, {Filter: "b/#", QoS: 2}}}},
	{name: "subscribe/v31", v: V31,
		raw: frame(0x82, u16(1), s("x"), 0),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "x"}}}},
	{name: "subscribe/v5/options", v: V5,
		raw: frame(0x82, u16(11), props(0x0B, 7, 0x26, s("k"), s("v")), s("a"), 0x2D, s("$share/g/b"), 0x01),
		pkt: &Subscribe{PacketID: 11,
			Properties:    Properties{SubscriptionIdentifiers: []uint32{7}, UserProperties: []UserProperty{{"k", "v"}}},
			Subscriptions: []Subscription{{Filter: "a", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}, {Filter: "$share/g/b", QoS: 1}}}},
	{name: "subscribe/v311/flags", v: V311, fail: malformedRC, raw: frame(0x80, u16(1), s("a"), 0)},
	{name: "subscribe/v311/reserved-option-bits", v: V311, fail: malformedRC, raw: frame(0x82, u16(1), s("a"), 0x04)},
	{name: "subscribe/v311/qos3", v: V311, fail: malformedRC, raw: frame(0x82, u16(1), s("a"), 3)},
	{name: "subscribe/v5/reserved-option-bits", v: V5, fail: malformedRC, raw: frame(0x82, u16(1), props(), s("a"), 0x40)},
	{name: "subscribe/v5/qos3", v: V5, fail: protocolRC, raw: frame(0x82, u16(1), props(), s("a"), 3)},
	{name: "subscribe/v5/retain-handling-3", v: V5, fail: protocolRC, raw: frame(0x82, u16(1), props(), s("a"), 0x30)},
	{name: "subscribe/v5/duplicate-subscription-id", v: V5, fail: protocolRC, raw: frame(0x82, u16(1), props(0x0B, 1, 0x0B, 2), s("a"), 0)},
	{name: "subscribe/v311/missing-options", v: V311, fail: malformedRC, raw: frame(0x82, u16(1), s("a"))},
	{name: "subscribe/v311/packet-id-0", v: V311, invalid: ProtocolError,
		raw: frame(0x82, u16(0), s("a"), 0), pkt: &Subscribe{Subscriptions: []Subscription{{Filter: "a"}}}},
	{name: "subscribe/v311/no-filters", v: V311, invalid: ProtocolError,
		raw: frame(0x82, u16(1)), pkt: &Subscribe{PacketID: 1}},
	{name: "subscribe/v5/subscription-id-0", v: V5, invalid: ProtocolError,
		raw: frame(0x82, u16(1), props(0x0B, 0), s("a"), 0),
		pkt: &Subscribe{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []uint32{0}}, Subscriptions: []Subscription{{Filter: "a"}}}},
	{name: "subscribe/v5/shared-no-local", v: V5, invalid: ProtocolError,
		raw: frame(0x82, u16(1), props(), s("$share/g/a"), 0x04),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "$share/g/a", NoLocal: true}}}},
	{name: "suback/v311", v: V311,
		raw: frame(0x90, u16(10), 0, 1, 0x80), pkt: &Suback{PacketID: 10, ReasonCodes: []ReasonCode{0, 1, 0x80}}},
	{name: "suback/v5/properties", v: V5,
		raw: frame(0x90, u16(11), props(0x1F, s("partly")), 2, 0x87, 0xA2),
		pkt: &Suback{PacketID: 11, Properties: Properties{Present: set(PropReasonString), ReasonString: "partly"},
			ReasonCodes: []ReasonCode{GrantedQoS2, NotAuthorized, WildcardSubscriptionsNotSupported}}},
	{name: "suback/v31/failure-code", v: V31, invalid: ProtocolError,
		raw: frame(0x90, u16(1), 0x80), pkt: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{0x80}}},
	{name: "suback/v5/reason-not-allowed", v: V5, invalid: ProtocolError,
		raw: frame(0x90, u16(1), props(), 0x11), pkt: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{NoSubscriptionExisted}}},

	// ---------- UNSUBSCRIBE, UNSUBACK ----------
	{name: "unsubscribe/v311", v: V311,
		raw: frame(0xA2, u16(3), s("a/b"), s("c/#")), pkt: &Unsubscribe{PacketID: 3, Filters: []string{"a/b", "c/#"}}},
	{name: "unsubscribe/v5/user-property", v: V5,
		raw: frame(0xA2, u16(4), props(0x26, s("k"), s("v")), s("x")),
		pkt: &Unsubscribe{PacketID: 4, Filters: []string{"x"}, Properties: Properties{UserProperties: []UserProperty{{"k", "v"}}}}},
	{name: "unsubscribe/v311/flags", v: V311, fail: malformedRC, raw: frame(0xA0, u16(3), s("a"))},
	{name: "unsubscribe/v311/filter-past-end", v: V311, fail: malformedRC, raw: frame(0xA2, u16(3), u16(4), "a"[0])},
	{name: "unsubscribe/v5/subscription-id-not-allowed", v: V5, fail: malformedRC, raw: frame(0xA2, u16(3), props(0x0B, 1), s("a"))},
	{name: "unsubscribe/v311/no-filters", v: V311, invalid: ProtocolError, raw: frame(0xA2, u16(3)), pkt: &Unsubscribe{PacketID: 3}},
	{name: "unsubscribe/v5/packet-id-0", v: V5, invalid: ProtocolError, raw: frame(0xA2, u16(0), props(), s("a")), pkt: &Unsubscribe{Filters: []string{"a"}}},
	{name: "unsuback/v311", v: V311, raw: frame(0xB0, u16(3)), pkt: &Unsuback{PacketID: 3}},
	{name: "unsuback/v5/codes", v: V5, raw: frame(0xB0, u16(4), props(), 0x00, 0x11),
		pkt: &Unsuback{PacketID: 4, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "unsuback/v311/payload", v: V311, fail: malformedRC, raw: frame(0xB0, u16(3), 0)},

	// ---------- PINGREQ, PINGRESP ----------
	{name: "pingreq/v311", v: V311, raw: frame(0xC0), pkt: &Pingreq{}},
	{name: "pingreq/v31", v: V31, raw: frame(0xC0), pkt: &Pingreq{}},
	{name: "pingreq/v5", v: V5, raw: frame(0xC0), pkt: &Pingreq{}},
	{name: "pingresp/v311", v: V311, raw: frame(0xD0), pkt: &Pingresp{}},
	{name: "pingresp/v5", v: V5, raw: frame(0xD0), pkt: &Pingresp{}},
	{name: "pingreq/v311/flags", v: V311, fail: malformedRC, raw: frame(0xC1)},
	{name: "pingreq/v5/body", v: V5, fail: malformedRC, raw: frame(0xC0, 0)},
	{name: "pingreq/v311/non-minimal-length", v: V311, raw: []byte{0xC0, 0x80, 0x00}, canon: frame(0xC0), pkt: &Pingreq{}},
	{name: "pingreq/v5/non-minimal-length", v: V5, fail: malformedRC, raw: []byte{0xC0, 0x80, 0x00}},

	// ---------- DISCONNECT, AUTH ----------
	{name: "disconnect/v311", v: V311, raw: frame(0xE0), pkt: &Disconnect{}},
	{name: "disconnect/v5/short", v: V5, raw: frame(0xE0), pkt: &Disconnect{}},
	{name: "disconnect/v5/with-will", v: V5, raw: frame(0xE0, 0x04), pkt: &Disconnect{ReasonCode: DisconnectWithWillMessage}},
	{name: "disconnect/v5/properties", v: V5,
		raw: frame(0xE0, 0x9C, props(0x11, u32(0), 0x1C, s("b:1883"), 0x1F, s("moved"))),
		pkt: &Disconnect{ReasonCode: UseAnotherServer, Properties: Properties{
			Present:               set(PropSessionExpiryInterval, PropServerReference, PropReasonString),
			SessionExpiryInterval: 0, ServerReference: "b:1883", ReasonString: "moved"}}},
	{name: "disconnect/v311/body", v: V311, fail: malformedRC, raw: frame(0xE0, 0)},
	{name: "disconnect/v5/flags", v: V5, fail: malformedRC, raw: frame(0xE2)},
	{name: "disconnect/v5/trailing", v: V5, fail: malformedRC, raw: frame(0xE0, 0, props(), 1)},
	{name: "disconnect/v5/reason-not-allowed", v: V5, invalid: ProtocolError,
		raw: frame(0xE0, 0x18), pkt: &Disconnect{ReasonCode: ContinueAuthentication}},
	{name: "auth/v5/continue", v: V5,
		raw: frame(0xF0, 0x18, props(0x15, s("SCRAM-SHA-1"), 0x16, s("abc"))),
		pkt: &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{
			Present: set(PropAuthenticationMethod, PropAuthenticationData), AuthenticationMethod: "SCRAM-SHA-1", AuthenticationData: []byte("abc")}}},
	{name: "auth/v5/short", v: V5, invalid: ProtocolError, raw: frame(0xF0), pkt: &Auth{}},
	{name: "auth/v311/reserved-type", v: V311, fail: malformedRC, raw: frame(0xF0)},
	{name: "auth/v5/flags", v: V5, fail: malformedRC, raw: frame(0xF1)},
	{name: "auth/v5/reason-not-allowed", v: V5, invalid: ProtocolError,
		raw: frame(0xF0, 0x04, props(0x15, s("m"))),
		pkt: &Auth{ReasonCode: DisconnectWithWillMessage, Properties: Properties{Present: set(PropAuthenticationMethod), AuthenticationMethod: "m"}}},

	// ---------- fixed header ----------
	{name: "header/type-0", v: V311, fail: malformedRC, raw: []byte{0x00, 0x00}},
	{name: "header/type-0/v5", v: V5, fail: malformedRC, raw: []byte{0x00, 0x00}},
	{name: "header/remaining-length-5-bytes", v: V311, fail: malformedRC, raw: []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}},
	{name: "header/remaining-length-5-bytes/v5", v: V5, fail: malformedRC, raw: []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}},
	{name: "header/truncated-body", v: V311, fail: truncated, raw: []byte{0x30, 0x0A, 0x00, 0x01, 'a'}},
	{name: "header/truncated-length", v: V5, fail: truncated, raw: []byte{0x30, 0xFF}},
	{name: "header/before-connect", v: VersionUnknown, fail: protocolRC, raw: frame(0xC0)},
	{name: "header/too-large", v: V5, fail: tooLarge, maxSize: 100, raw: append([]byte{0x30, 0x63}, make([]byte, 99)...)},
	{name: "header/too-large-declared", v: V311, fail: tooLarge, maxSize: 1 << 20, raw: []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}},
	{name: "header/at-maximum", v: V311, maxSize: 8, raw: frame(0x30, s("t"), []byte("abc")),
		pkt: &Publish{Topic: "t", Payload: []byte("abc")}},
}
