package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// rawWorkload is a sequence of Stores that learns a wildcard (30 devices
// under one level, over the threshold of 20), uses a producer for some
// clients, and includes a duplicate and a refused Store.
type rawStore struct {
	client string
	msgs   []*storagev1.Message
	p      *Producer
}

func rawWorkload() []rawStore {
	var out []rawStore
	seq := map[string]uint64{}
	for i := range 60 {
		client := fmt.Sprintf("pub%d", i%7)
		var msgs []*storagev1.Message
		for j := range 1 + i%3 {
			msgs = append(msgs, &storagev1.Message{
				Topic:   fmt.Sprintf("bench/dev%d/l1/l2", (i*3+j)%30),
				Payload: []byte(fmt.Sprintf("payload %d/%d", i, j)),
				Qos:     uint32(1 + j%2),
			})
		}
		var p *Producer
		if i%7 < 3 {
			p = &Producer{ClientID: client, Epoch: 1, FirstSeq: seq[client] + 1}
			seq[client] += uint64(len(msgs))
		}
		out = append(out, rawStore{client, msgs, p})
	}
	// A retry of pub0's last Store is a duplicate; a gap is refused.
	for i := len(out) - 1; i >= 0; i-- {
		if out[i].client == "pub0" {
			out = append(out, out[i])
			break
		}
	}
	out = append(out, rawStore{"pub1", out[1].msgs, &Producer{ClientID: "pub1", Epoch: 1, FirstSeq: seq["pub1"] + 5}})
	return out
}

// dumpShardKeys returns every key and value under the shards' prefixes (the
// site record holds a random site id, so it is left out).
func dumpShardKeys(t *testing.T, fs vfs.FS, dir string) (keys, values [][]byte) {
	t.Helper()
	pdb, err := pebble.Open(dir, &pebble.Options{FS: fs, ReadOnly: true, FormatMajorVersion: pebble.FormatNewest,
		Logger: pebbleLogger{l: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	it, err := pdb.NewIter(&pebble.IterOptions{UpperBound: []byte{0xFF, 0xFF}})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
		values = append(values, bytes.Clone(it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return keys, values
}

// TestRawWritesWhatDBWrites runs the same Stores, at the same wall clock,
// through a DB and through a Raw, and compares every key and value the two
// wrote: data keys and message values, trie edges, stream counts, producer
// states, shard clocks and generation records must be byte-identical.
func TestRawWritesWhatDBWrites(t *testing.T) {
	fs := vfs.NewMem()
	const nShards = 4
	work := rawWorkload()
	type result struct {
		res StoreResult
		err error
	}

	dbClock := newFakeClock(1_700_000_000_000_000)
	db, err := Open(Options{DataDir: "db", FS: fs, NShards: nShards, Now: dbClock.Now, IdleTickInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var dbResults []result
	for _, s := range work {
		r, err := db.Store(context.Background(), s.client, s.msgs, s.p)
		dbResults = append(dbResults, result{r, err})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	rawClock := newFakeClock(1_700_000_000_000_000)
	raw, err := OpenRaw(Options{DataDir: "raw", FS: fs, NShards: nShards, Now: rawClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range work {
		r, err := raw.Write(s.client, s.msgs, s.p)
		want := dbResults[i]
		if fmt.Sprint(err) != fmt.Sprint(want.err) || fmt.Sprint(r) != fmt.Sprint(want.res) {
			t.Errorf("store %d: raw (%v, %v), db (%v, %v)", i, r, err, want.res, want.err)
		}
	}
	if em := raw.EngineMetrics(); em.WALFsyncs == 0 || em.WALBytesWritten == 0 {
		t.Errorf("raw engine metrics %+v: want fsyncs and bytes", em)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	if last := dbResults[len(dbResults)-1].err; !errors.Is(last, ErrSequenceGap) {
		t.Errorf("the gap Store: err %v, want ErrSequenceGap", last)
	}
	if !dbResults[len(dbResults)-2].res.Duplicate {
		t.Errorf("the retried Store was not a duplicate")
	}

	dk, dv := dumpShardKeys(t, fs, "db")
	rk, rv := dumpShardKeys(t, fs, "raw")
	data := 0
	for i := range max(len(dk), len(rk)) {
		if i >= len(dk) || i >= len(rk) {
			t.Fatalf("db wrote %d keys, raw %d", len(dk), len(rk))
		}
		if !bytes.Equal(dk[i], rk[i]) || !bytes.Equal(dv[i], rv[i]) {
			t.Fatalf("key %d: db %s = %x, raw %s = %x", i, prettyKey(dk[i]), dv[i], prettyKey(rk[i]), rv[i])
		}
		if len(dk[i]) > dataKeyPrefixLen && dk[i][2] == tagGenData && dk[i][11] == subData {
			data++
		}
	}
	if want := storedMessages(work); data != want {
		t.Errorf("%d data keys, want %d", data, want)
	}
}

// storedMessages counts the messages of the Stores that were accepted.
func storedMessages(work []rawStore) int {
	n := 0
	for _, s := range work[:len(work)-2] {
		n += len(s.msgs)
	}
	return n
}

// TestRawConcurrentWritesOpenAsDB writes from many goroutines at once (a
// real clock, shards shared by several writers), then opens the dir with a
// DB: every message is counted, and producers continue where Raw left off.
func TestRawConcurrentWritesOpenAsDB(t *testing.T) {
	opts := Options{DataDir: t.TempDir(), NShards: 4, IdleTickInterval: time.Hour}
	raw, err := OpenRaw(opts)
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter, batch = 16, 20, 3
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			client := fmt.Sprintf("w%d", w)
			for i := range perWriter {
				msgs := make([]*storagev1.Message, batch)
				for j := range msgs {
					msgs[j] = &storagev1.Message{Topic: fmt.Sprintf("bench/dev%d/x", (w*perWriter+i)%50), Payload: []byte("p")}
				}
				p := &Producer{ClientID: client, Epoch: 1, FirstSeq: uint64(i*batch + 1)}
				if _, err := raw.Write(client, msgs, p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var total uint64
	for s := range db.NShards() {
		for _, n := range db.MessageCounts(s) {
			total += n
		}
	}
	if total != writers*perWriter*batch {
		t.Errorf("DB counts %d messages, want %d", total, writers*perWriter*batch)
	}
	if _, last, ok := db.ProducerState("w3"); !ok || last != perWriter*batch {
		t.Errorf("producer w3: last seq %d (found %v), want %d", last, ok, perWriter*batch)
	}
	res, err := db.Store(context.Background(), "w3", []*storagev1.Message{{Topic: "bench/dev1/x"}}, &Producer{ClientID: "w3", Epoch: 1, FirstSeq: perWriter * batch})
	if err != nil || !res.Duplicate {
		t.Errorf("retry of w3's last message after reopen: (%v, %v), want a duplicate", res, err)
	}
	// Pebble records an fsync in its metrics after it wakes the committer,
	// so the count may trail the commit that caused it by a moment.
	wait.For(t, 5*time.Second, "engine metrics with WAL fsyncs and bytes", func() bool {
		em := db.EngineMetrics()
		return em.WALFsyncs != 0 && em.WALBytesWritten != 0
	})
}

func TestRawLocksItsDir(t *testing.T) {
	dir := t.TempDir()
	raw, err := OpenRaw(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := Open(Options{DataDir: dir}); !errors.Is(err, ErrLocked) {
		t.Errorf("Open of a dir a Raw holds: %v, want ErrLocked", err)
	}
}
