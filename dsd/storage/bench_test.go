package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
)

// BenchmarkStore measures synced Stores on disk: N concurrent publishers,
// B messages per Store, S payload bytes. It reports messages per second.
func BenchmarkStore(b *testing.B) {
	for _, conc := range []int{1, 16, 128} {
		for _, batch := range []int{1, 16} {
			for _, size := range []int{64, 1024} {
				b.Run(fmt.Sprintf("concurrency=%d/batch=%d/size=%d", conc, batch, size), func(b *testing.B) {
					benchStore(b, conc, batch, size)
				})
			}
		}
	}
}

func benchStore(b *testing.B, conc, batch, size int) {
	db, err := Open(Options{DataDir: b.TempDir(), IdleTickInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	payload := make([]byte, size)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := (b.N + conc - 1) / conc
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := fmt.Sprintf("client-%d", w)
			msgs := make([]*storagev1.Message, batch)
			for i := range msgs {
				msgs[i] = &storagev1.Message{Topic: fmt.Sprintf("bench/%d/%d", w, i%4), Payload: payload, Qos: 1}
			}
			for i := 0; i < per; i++ {
				if _, err := db.Store(context.Background(), client, msgs, nil); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(per*conc*batch)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(per*conc)/el.Seconds(), "stores/s")
}

// BenchmarkNext measures reading a wildcard stream: ns per message.
func BenchmarkNext(b *testing.B) {
	db, err := Open(Options{DataDir: b.TempDir(), NShards: 1, IdleTickInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	const n = 20000
	for i := 0; i < n; i += 100 {
		msgs := make([]*storagev1.Message, 100)
		for j := range msgs {
			msgs[j] = &storagev1.Message{Topic: fmt.Sprintf("sensor/%d/temp", (i+j)%300), Payload: make([]byte, 100)}
		}
		if _, err := db.Store(ctx, "c", msgs, nil); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.AddGeneration(0); err != nil { // read gen 1 without a cutoff
		b.Fatal(err)
	}
	streams, err := db.GetStreams("sensor/+/temp", 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	read := 0
	for read < b.N {
		for _, s := range streams {
			it, err := db.MakeIterator(s, "sensor/+/temp", 0)
			if err != nil {
				b.Fatal(err)
			}
			for read < b.N {
				es, next, _, err := db.Next(ctx, it, Limit{Max: 500})
				if err != nil {
					b.Fatal(err)
				}
				if len(es) == 0 {
					break
				}
				read += len(es)
				it = next
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(read), "ns/msg")
}

// BenchmarkNextFilter reads one wide stream (sensor/+/temp, 1,000 devices,
// 20,000 messages, in a non-current generation so that v1 has no cutoff)
// with a narrow filter (one device: 20 messages) and with the full filter,
// for each layout. One op reads the whole result; ns/msg is per returned
// message. With v2 the narrow read merge-joins one index list with the
// data keys; with v1 it seeks per epoch and hash.
func BenchmarkNextFilter(b *testing.B) {
	for _, layout := range []string{LayoutWildcardOptimized, LayoutWildcardOptimizedV2} {
		b.Run("layout="+layout, func(b *testing.B) {
			opts := Options{DataDir: b.TempDir(), NShards: 1, IdleTickInterval: time.Hour}
			opts.Layout.Type = layout
			db, err := Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			const n, devices = 20000, 1000
			for i := 0; i < n; i += 200 {
				msgs := make([]*storagev1.Message, 200)
				for j := range msgs {
					msgs[j] = &storagev1.Message{Topic: fmt.Sprintf("sensor/%d/temp", (i+j)%devices), Payload: make([]byte, 100)}
				}
				if _, err := db.Store(ctx, "c", msgs, nil); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := db.AddGeneration(0); err != nil {
				b.Fatal(err)
			}
			for _, f := range []struct{ name, filter string }{{"narrow", "sensor/777/temp"}, {"all", "sensor/+/temp"}} {
				b.Run("filter="+f.name, func(b *testing.B) {
					streams, err := db.GetStreams(f.filter, 0, 0)
					if err != nil {
						b.Fatal(err)
					}
					read := 0
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						for _, s := range streams {
							if s.Generation != 1 {
								continue
							}
							it, err := db.MakeIterator(s, f.filter, 0)
							if err != nil {
								b.Fatal(err)
							}
							for {
								es, next, _, err := db.Next(ctx, it, Limit{Max: 500})
								if err != nil {
									b.Fatal(err)
								}
								if len(es) == 0 {
									break
								}
								read += len(es)
								it = next
							}
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(read, 1)), "ns/msg")
					b.ReportMetric(float64(read)/float64(b.N), "msgs/op")
				})
			}
		})
	}
}
