package engine_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// BenchmarkDurablePush measures pushed evaluations running concurrently
// against the Pebble store on disk: each evaluation's notification and
// dedupe marks are synced before Evaluate returns, and concurrent ones
// share syncs (pebblestore's group commit). 64 evaluations are in flight
// (b.SetParallelism with GOMAXPROCS), each with its own stanza, the way a
// burst of messages for many accounts reaches push2d; "pushes/s" is the
// figure to compare.
//
//	go test -run '^$' -bench DurablePush -benchtime 20000x ./engine/
func BenchmarkDurablePush(b *testing.B) {
	e, _, _ := newEngine(b, engine.Config{})
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
		b.Fatal(err)
	}
	base := stanza.MustParse(msgBody)
	var n atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			st := base.Clone()
			st.SetAttr("id", "d"+strconv.FormatInt(n.Add(1), 10))
			v, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}})
			if err != nil {
				b.Error(err)
				return
			}
			if len(v.Notifications) != 1 {
				b.Errorf("not pushed: %+v", v.Outcomes)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}
