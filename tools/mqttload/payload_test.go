package main

import (
	"strings"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	sent := time.Unix(1700000000, 123456789)
	h := header{PubIndex: 7, Publisher: "mqttload-abc-pub7", Seq: 1 << 40, Sent: sent}
	for _, size := range []int{0, headerFixed, 100, 4096} {
		b := encodePayload(nil, h, size)
		if len(b) < size || len(b) < headerFixed+len(h.Publisher) {
			t.Fatalf("size %d: got %d bytes", size, len(b))
		}
		got, err := decodePayload(b)
		if err != nil || got.PubIndex != 7 || got.Publisher != h.Publisher || got.Seq != h.Seq || !got.Sent.Equal(sent) {
			t.Fatalf("size %d: %+v, %v", size, got, err)
		}
	}
	// Appends to dst.
	b := encodePayload([]byte("keep"), h, 0)
	if string(b[:4]) != "keep" {
		t.Fatal("dst overwritten")
	}
}

func TestPayloadLongPublisherTruncated(t *testing.T) {
	h := header{Publisher: strings.Repeat("p", 300), Sent: time.Now()}
	got, err := decodePayload(encodePayload(nil, h, 0))
	if err != nil || len(got.Publisher) != 255 {
		t.Fatalf("%d bytes, %v", len(got.Publisher), err)
	}
}

func TestPayloadRejectsForeignBytes(t *testing.T) {
	good := encodePayload(nil, header{Publisher: "abc", Seq: 1, Sent: time.Now()}, 0)
	for name, b := range map[string][]byte{
		"empty":       nil,
		"text":        []byte("21.5 degrees"),
		"bad magic":   append([]byte("xxxx"), good[4:]...),
		"bad version": append(append([]byte("mqld"), 9), good[5:]...),
		"short id":    good[:len(good)-1],
		"short fixed": good[:headerFixed-1],
	} {
		if _, err := decodePayload(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
