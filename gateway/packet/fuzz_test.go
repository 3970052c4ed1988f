package packet

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The fuzz targets take the version as an index into fuzzVersions so that
// one corpus covers every version, VersionUnknown (before CONNECT) included.
var fuzzVersions = [...]Version{VersionUnknown, V31, V311, V5}

func fuzzVersion(b byte) Version { return fuzzVersions[int(b)%len(fuzzVersions)] }

func versionIndex(v Version) byte {
	for i, fv := range fuzzVersions {
		if fv == v {
			return byte(i)
		}
	}
	panic("unknown version")
}

// FuzzDecode: no input panics; Decode and ReadPacket agree; allocation stays
// within the documented bound.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, ver byte, data []byte) {
		v := fuzzVersion(ver)
		p, n, err := Decode(data, v, 0)
		if err == nil {
			if p == nil || n < 2 || n > len(data) {
				t.Fatalf("Decode: p=%v n=%d of %d", p, n, len(data))
			}
			if p2, _, err := Decode(data, v, uint32(n)); err != nil || !cmp.Equal(p, p2, cmpOpts...) {
				t.Fatalf("Decode with maxSize=n: %v", err)
			}
			if _, _, err := Decode(data, v, uint32(n-1)); err != PacketTooLarge {
				t.Fatalf("Decode with maxSize=n-1: %v", err)
			}
		}
		rp, rerr := ReadPacket(bytes.NewReader(data), v, 0)
		if len(data) == 0 {
			if rerr != io.EOF {
				t.Fatalf("ReadPacket(empty) = %v", rerr)
			}
		} else if outcome(rerr) != outcome(err) {
			t.Fatalf("Decode: %v; ReadPacket: %v", err, rerr)
		}
		if err == nil && !cmp.Equal(p, rp, cmpOpts...) {
			t.Fatalf("Decode and ReadPacket differ: %s", cmp.Diff(p, rp, cmpOpts...))
		}
		checkAllocBound(t, data, v)
	})
}

// FuzzRoundTrip: whatever decodes encodes, and decode → encode → decode gives
// the same packet and the same bytes.
func FuzzRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, ver byte, data []byte) {
		v := fuzzVersion(ver)
		p, _, err := Decode(data, v, 0)
		if err != nil {
			return
		}
		_ = Validate(p, v, ValidateOptions{})
		_ = Validate(p, v, ValidateOptions{FromServer: true, TopicAliasMaximum: 65535, MaxClientIDLength: 23})
		ev := v
		if c, ok := p.(*Connect); ok {
			ev = c.Version
		}
		enc, err := p.Append(nil, ev)
		if err != nil {
			t.Fatalf("Append of a decoded %v: %v", p.Type(), err)
		}
		if size, err := p.Size(ev); err != nil || size != len(enc) {
			t.Fatalf("Size = %d, %v; Append wrote %d", size, err, len(enc))
		}
		p2, n2, err := Decode(enc, v, 0)
		if err != nil || n2 != len(enc) {
			t.Fatalf("Decode of re-encoded % x: n=%d %v", enc, n2, err)
		}
		if diff := cmp.Diff(p, p2, cmpOpts...); diff != "" {
			t.Fatalf("round trip changed the packet (-first +second):\n%s", diff)
		}
		enc2, err := p2.Append(nil, ev)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding is not stable: % x vs % x (%v)", enc, enc2, err)
		}
	})
}

// chunkReader returns the stream in pieces whose sizes cycle through sizes.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)])%64 + 1
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

type streamResult struct {
	Pkts []Packet
	End  string // outcome of the last read; "eof" at a clean end
}

// decodeWhole decodes a stream held in one buffer.
func decodeWhole(data []byte, v Version) streamResult {
	var res streamResult
	for {
		if len(data) == 0 {
			res.End = "eof"
			return res
		}
		p, n, err := Decode(data, v, 0)
		if err != nil {
			res.End = outcome(err)
			return res
		}
		res.Pkts = append(res.Pkts, p)
		if c, ok := p.(*Connect); ok && v == VersionUnknown {
			v = c.Version
		}
		data = data[n:]
	}
}

// decodeStream reads the same stream packet by packet.
func decodeStream(r io.Reader, v Version) streamResult {
	var res streamResult
	for {
		p, err := ReadPacket(r, v, 0)
		if err == io.EOF {
			res.End = "eof"
			return res
		}
		if err != nil {
			res.End = outcome(err)
			return res
		}
		res.Pkts = append(res.Pkts, p)
		if c, ok := p.(*Connect); ok && v == VersionUnknown {
			v = c.Version
		}
	}
}

// FuzzStream: a stream split at arbitrary points decodes as the whole does.
func FuzzStream(f *testing.F) {
	f.Fuzz(func(t *testing.T, ver byte, data, sizes []byte) {
		v := fuzzVersion(ver)
		whole := decodeWhole(data, v)
		for _, r := range []io.Reader{
			&chunkReader{data: data, sizes: sizes},
			bufio.NewReaderSize(&chunkReader{data: data, sizes: sizes}, 16),
		} {
			got := decodeStream(r, v)
			if diff := cmp.Diff(whole, got, cmpOpts...); diff != "" {
				t.Fatalf("%T: stream differs from whole (-whole +stream):\n%s", r, diff)
			}
		}
	})
}

// allocBound is the documented decoder allocation limit: 16 bytes per byte
// of remaining length plus 2 KiB for the packet structs.
func allocBound(remaining int) uint64 { return 16*uint64(remaining) + 2048 }

// heapAllocated returns the bytes f allocates, the least of three runs so
// that background allocation does not count.
func heapAllocated(f func()) uint64 {
	best := ^uint64(0)
	var before, after runtime.MemStats
	for range 3 {
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		best = min(best, after.TotalAlloc-before.TotalAlloc)
	}
	return best
}

// checkAllocBound checks ReadPacket, which allocates the packet bytes too,
// and Decode against allocBound.
func checkAllocBound(t *testing.T, data []byte, v Version) {
	t.Helper()
	remaining, extra := 0, uint64(0)
	if h, n, err := ParseFixedHeader(data, v); err == nil {
		remaining = min(h.RemainingLength, len(data)-n)
		if remaining < h.RemainingLength {
			// ReadPacket allocates up to readChunk before the body
			// arrives.
			extra = readChunk
		}
	}
	br := bytes.NewReader(data)
	got := heapAllocated(func() {
		br.Reset(data)
		_, _ = ReadPacket(br, v, 0)
	})
	if got > allocBound(remaining)+extra {
		t.Fatalf("ReadPacket allocated %d bytes for remaining length %d (bound %d)", got, remaining, allocBound(remaining))
	}
	got = heapAllocated(func() { _, _, _ = Decode(data, v, 0) })
	if got > allocBound(remaining) {
		t.Fatalf("Decode allocated %d bytes for remaining length %d (bound %d)", got, remaining, allocBound(remaining))
	}
}

// TestDecodeAllocationBound runs the allocation check on packets built to
// allocate as much as possible per byte.
func TestDecodeAllocationBound(t *testing.T) {
	const n = 20000
	var subs, unsubs, users, ids []byte
	for range n {
		subs = append(subs, 0, 0, 0)
		unsubs = append(unsubs, 0, 1, 'a')
		users = append(users, 0x26, 0, 0, 0, 0)
		ids = append(ids, 0x0B, 1)
	}
	cases := map[string]struct {
		v    Version
		data []byte
	}{
		"subscribe-empty-filters": {V311, frame(0x82, u16(1), subs)},
		"unsubscribe-short":       {V5, frame(0xA2, u16(1), props(), unsubs)},
		"user-properties":         {V5, frame(0x30, s("t"), props(users))},
		"subscription-ids":        {V5, frame(0x30, s("t"), props(ids))},
		"suback-codes":            {V5, frame(0x90, u16(1), props(), make([]byte, 3*n))},
		"connect-everything":      {V5, goldenByName("connect/v5/properties").raw},
		"declared-not-sent":       {V311, []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 'a'}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Decode(tc.data, tc.v, 0); err != nil && !strings.HasPrefix(name, "declared") {
				t.Fatalf("Decode: %v", err)
			}
			checkAllocBound(t, tc.data, tc.v)
		})
	}
	for _, tc := range goldenCases {
		checkAllocBound(t, tc.raw, tc.v)
	}
}

func goldenByName(name string) golden {
	for _, tc := range goldenCases {
		if tc.name == name {
			return tc
		}
	}
	panic("no golden case " + name)
}

// ---- seed corpora ----

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz seed files from the golden table")

// corpusFile renders fuzz arguments in the "go test fuzz v1" format.
func corpusFile(args ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch a := a.(type) {
		case byte:
			fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(a)))
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(a)))
		}
	}
	return []byte(b.String())
}

// seedCorpora returns the committed seed files: every golden case for
// FuzzDecode and FuzzRoundTrip, and for FuzzStream the valid golden packets
// of each version back to back, cut in several chunk patterns.
func seedCorpora() map[string][]byte {
	files := map[string][]byte{}
	name := func(s string) string { return strings.NewReplacer("/", "-").Replace(s) }
	streams := map[Version][]byte{}
	for _, tc := range goldenCases {
		if tc.maxSize != 0 {
			continue
		}
		seed := corpusFile(versionIndex(tc.v), tc.raw)
		files[filepath.Join("FuzzDecode", name(tc.name))] = seed
		files[filepath.Join("FuzzRoundTrip", name(tc.name))] = seed
		if tc.fail == decodes && tc.v != VersionUnknown {
			streams[tc.v] = append(streams[tc.v], tc.raw...)
		}
	}
	for v, data := range streams {
		for i, sizes := range [][]byte{{0}, {1, 6, 2}, {63}, {3, 0, 17, 5}} {
			files[filepath.Join("FuzzStream", fmt.Sprintf("v%d-chunks%d", v, i))] = corpusFile(versionIndex(v), data, sizes)
		}
		// A stream with a malformed packet in the middle.
		bad := append(append(bytes.Clone(data[:len(data)/2]), 0x00, 0x00), data...)
		files[filepath.Join("FuzzStream", fmt.Sprintf("v%d-bad", v))] = corpusFile(versionIndex(v), bad, []byte{2})
	}
	connect := goldenByName("connect/v5/properties").raw
	files[filepath.Join("FuzzStream", "connect-first")] = corpusFile(versionIndex(VersionUnknown), append(bytes.Clone(connect), streams[V5]...), []byte{5, 1})
	return files
}

// TestSeedCorpora keeps testdata/fuzz in step with the golden table; run
// with -update-corpus after changing the table.
func TestSeedCorpora(t *testing.T) {
	for path, want := range seedCorpora() {
		full := filepath.Join("testdata", "fuzz", path)
		if *updateCorpus {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(full)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v); run go test -run TestSeedCorpora -update-corpus", full, err)
		}
	}
}
