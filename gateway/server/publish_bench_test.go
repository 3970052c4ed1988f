//go:build unix

package server

import (
	"bufio"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stratamq/strata/gateway/packet"
)

// BenchmarkPublishQoS1 measures the gateway's inbound path over loopback
// TCP with the in-memory storage: a client keeps inflight QoS 1 PUBLISHes
// of 100 bytes unacknowledged and sends the next one per PUBACK. ns/op is
// per acknowledged message; cpu-ns/op is the process's CPU time (user and
// system) per message, which a busy machine changes less than ns/op; both
// and the allocations are the gateway's and the client's together (the
// client allocates one packet per PUBACK).
func BenchmarkPublishQoS1(b *testing.B) {
	for _, inflight := range []int{1, 32} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			s := testServer(b)
			nc, err := net.Dial("tcp", s.addr("tcp"))
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			v := packet.V5
			send := func(p packet.Packet) {
				buf, err := p.Append(nil, v)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := nc.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			send(&packet.Connect{Version: v, ClientID: "bench", CleanStart: true, KeepAlive: 60})
			if p, err := packet.ReadPacket(br, v, 0); err != nil {
				b.Fatal(err)
			} else if _, ok := p.(*packet.Connack); !ok {
				b.Fatalf("want CONNACK, got %s", p.Type())
			}
			pub := &packet.Publish{Topic: "bench/pub/1", QoS: 1, Payload: make([]byte, 100)}
			wire := make([][]byte, 65536)
			next := uint16(0)
			encode := func() []byte {
				next = next%65535 + 1
				if wire[next] == nil {
					pub.PacketID = next
					if wire[next], err = pub.Append(nil, v); err != nil {
						b.Fatal(err)
					}
				}
				return wire[next]
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			sent := 0
			for ; sent < min(inflight, b.N); sent++ {
				if _, err := nc.Write(encode()); err != nil {
					b.Fatal(err)
				}
			}
			for acked := 0; acked < b.N; acked++ {
				p, err := packet.ReadPacket(br, v, 0)
				if err != nil {
					b.Fatal(err)
				}
				if ack, ok := p.(*packet.Puback); !ok || ack.ReasonCode != packet.Success {
					b.Fatalf("want PUBACK, got %+v", p)
				}
				if sent < b.N {
					if _, err := nc.Write(encode()); err != nil {
						b.Fatal(err)
					}
					sent++
				}
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the CPU time (user and system) the process used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
