package pebblestore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/push2/push2/engine"
)

// BenchmarkRecordPushParallel: RecordPush alone, 32 callers per
// GOMAXPROCS, each push its own stanza; the group commit's rate.
//
//	go test -run '^$' -bench RecordPushParallel -benchtime 20000x ./engine/pebblestore/
func BenchmarkRecordPushParallel(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	var n atomic.Int64
	k := engine.RegKey{Account: "a@b", ID: "p"}
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			id := fmt.Sprint(i)
			if _, err := s.RecordPush(k, []string{"s:" + id}, time.Now(), engine.OutboxEntry{ID: id}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
