package packet

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
)

func benchPublish(qos byte, size int, withProps bool) *Publish {
	p := &Publish{QoS: qos, Topic: "sensors/building-7/floor-3/temperature", Payload: bytes.Repeat([]byte{'x'}, size)}
	if qos > 0 {
		p.PacketID = 4242
	}
	if withProps {
		p.Properties = Properties{
			Present:                set(PropPayloadFormatIndicator, PropMessageExpiryInterval, PropContentType, PropCorrelationData),
			PayloadFormatIndicator: 1, MessageExpiryInterval: 3600, ContentType: "application/json",
			CorrelationData: []byte("req-0001"),
			UserProperties:  []UserProperty{{"trace-id", "4bf92f3577b34da6"}, {"origin", "gw-1"}},
		}
	}
	return p
}

func sizeName(n int) string {
	if n >= 1024 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

type publishCase struct {
	name  string
	qos   byte
	size  int
	props bool
}

func publishCases() []publishCase {
	var cs []publishCase
	for _, qos := range []byte{0, 1} {
		for _, size := range []int{100, 64 << 10} {
			for _, props := range []bool{false, true} {
				cs = append(cs, publishCase{fmt.Sprintf("qos=%d/size=%s/props=%v", qos, sizeName(size), props), qos, size, props})
			}
		}
	}
	return cs
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, c := range publishCases() {
		raw, err := benchPublish(c.qos, c.size, c.props).Append(nil, V5)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(raw, V5, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodePublish(b *testing.B) {
	for _, c := range publishCases() {
		p := benchPublish(c.qos, c.size, c.props)
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, c.size+1024)
			b.SetBytes(int64(c.size))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = p.Append(buf[:0], V5); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadPacketPublish reads from a bufio.Reader, as the gateway does.
func BenchmarkReadPacketPublish(b *testing.B) {
	for _, c := range publishCases() {
		raw, _ := benchPublish(c.qos, c.size, c.props).Append(nil, V5)
		b.Run(c.name, func(b *testing.B) {
			r := bytes.NewReader(raw)
			br := bufio.NewReaderSize(r, 32<<10)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(raw)
				br.Reset(r)
				if _, err := ReadPacket(br, V5, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchSubscribe(filters int, v Version) *Subscribe {
	s := &Subscribe{PacketID: 7}
	for i := range filters {
		sub := Subscription{Filter: fmt.Sprintf("devices/+/telemetry/%d/#", i), QoS: 1}
		if v == V5 {
			sub.NoLocal, sub.RetainHandling = true, 1
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if v == V5 {
		s.Properties.SubscriptionIdentifiers = []uint32{99}
	}
	return s
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		for _, n := range []int{1, 10} {
			raw, _ := benchSubscribe(n, v).Append(nil, v)
			b.Run(fmt.Sprintf("version=%s/filters=%d", v, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := Decode(raw, v, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncodeSubscribe(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		for _, n := range []int{1, 10} {
			p := benchSubscribe(n, v)
			b.Run(fmt.Sprintf("version=%s/filters=%d", v, n), func(b *testing.B) {
				var buf []byte
				b.ReportAllocs()
				for b.Loop() {
					buf, _ = p.Append(buf[:0], v)
				}
			})
		}
	}
}

func benchConnect(v Version) *Connect {
	c := &Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "client-0123456789",
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("secret-password"),
		WillFlag: true, WillQoS: 1, WillTopic: "clients/client-0123456789/status", WillPayload: []byte("offline")}
	if v == V5 {
		c.Properties = Properties{Present: set(PropSessionExpiryInterval, PropReceiveMaximum, PropMaximumPacketSize, PropTopicAliasMaximum),
			SessionExpiryInterval: 3600, ReceiveMaximum: 100, MaximumPacketSize: 1 << 20, TopicAliasMaximum: 16}
		c.WillProperties = Properties{Present: set(PropWillDelayInterval), WillDelayInterval: 5}
	}
	return c
}

func BenchmarkDecodeConnect(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		raw, _ := benchConnect(v).Append(nil, v)
		b.Run("version="+v.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(raw, VersionUnknown, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeConnect(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		p := benchConnect(v)
		b.Run("version="+v.String(), func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = p.Append(buf[:0], v)
			}
		})
	}
}
