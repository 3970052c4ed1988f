package storage

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// The v1 compatibility fixture: a data directory written with the
// wildcard_optimized layout (the only layout before wildcard_optimized_v2),
// committed under testdata/compat/v1 so that every later version must open
// and read it (STYLE.md rule 14). TestWriteV1Fixture rewrites it, only when
// STRATA_WRITE_V1_FIXTURE=1; review the diff, never rewrite it blindly: the
// point of the fixture is that it does not change.

const v1FixtureDir = "testdata/compat/v1"

// v1FixtureStartUs is the fake wall clock of the fixture's first write.
const v1FixtureStartUs = 1_700_000_000_000_000

// v1FixtureOptions are the options the fixture was written with, minus the
// data dir.
func v1FixtureOptions() Options {
	return Options{
		NShards: 2,
		Layout: LayoutConfig{
			BitsPerTopicLevel: 64, EpochBits: 20, TopicIndexBytes: 4,
			// sensors/<device>/temp turns varying after 4 devices.
			WildcardThresholds: []int{100, 4}, MaxTrieStates: 100000,
		},
		IdleTickInterval:      time.Hour,
		EmergencyBallastBytes: -1,
		MinFreeBytes:          -1,
	}
}

// fixtureMessage is one message of the fixture, stored by client.
type fixtureMessage struct{ client, topic, payload string }

// v1FixtureMessages lists what the fixture holds, in store order: a
// wildcard stream (sensors/+/temp over 12 devices), a single-topic stream
// (plant/status), and a stream below the threshold (sensors/dev00/hum).
func v1FixtureMessages() []fixtureMessage {
	var out []fixtureMessage
	for round := 0; round < 5; round++ {
		for d := 0; d < 12; d++ {
			out = append(out, fixtureMessage{fmt.Sprintf("dev%02d", d), fmt.Sprintf("sensors/dev%02d/temp", d), fmt.Sprintf("t%d-%d", d, round)})
		}
		out = append(out,
			fixtureMessage{"plc", "plant/status", fmt.Sprintf("ok-%d", round)},
			fixtureMessage{"dev00", "sensors/dev00/hum", fmt.Sprintf("h-%d", round)},
		)
	}
	return out
}

// TestWriteV1Fixture writes the v1 fixture; see the comment above.
func TestWriteV1Fixture(t *testing.T) {
	if os.Getenv("STRATA_WRITE_V1_FIXTURE") != "1" {
		t.Skip("set STRATA_WRITE_V1_FIXTURE=1 to rewrite " + v1FixtureDir)
	}
	dir := t.TempDir()
	clock := newFakeClock(v1FixtureStartUs)
	opts := v1FixtureOptions()
	opts.DataDir = dir
	opts.Now = clock.Now
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	seq := map[string]uint64{}
	for _, m := range v1FixtureMessages() {
		seq[m.client]++
		clock.Advance(3 * time.Millisecond)
		p := &Producer{ClientID: m.client, Epoch: 1, FirstSeq: seq[m.client]}
		if _, err := db.Store(context.Background(), m.client, []*storagev1.Message{msg(m.topic, m.payload)}, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(v1FixtureDir); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(dir, v1FixtureDir); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files of src (recursively) into dst.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			_ = out.Close()
			return err
		}
		return out.Close()
	})
}
