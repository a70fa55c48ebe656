package engine_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/cpubench"
)

// BenchmarkDurablePush measures pushed evaluations running concurrently
// against the Pebble store on disk: each evaluation's notification and
// dedupe marks are synced before Evaluate returns, and concurrent ones
// share syncs (pebblestore's group commit). 64 evaluations are in flight
// (b.SetParallelism with GOMAXPROCS), each with its own stanza, for 16
// accounts with one registration each, the way a burst of messages for
// many accounts reaches push2d. "pushes/s" is the figure to compare;
// "cpu-µs/push" is the process's CPU time per push (evaluation, store,
// Pebble's flushes and compactions, GC), which other load on the machine
// does not inflate; "pushes/sync" is the mean group.
//
//	go test -run '^$' -bench DurablePush -benchtime 40000x ./engine/
func BenchmarkDurablePush(b *testing.B) {
	e, store, _ := newEngine(b, engine.Config{})
	ctx := context.Background()
	accounts := make([]string, 16)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("user%d@capulet.lit", i)
		if _, _, err := e.Enable(ctx, accounts[i], "phone", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
			b.Fatal(err)
		}
	}
	base := stanza.MustParse(msgBody)
	var n atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	syncs := store.PushSyncs()
	b.ResetTimer()
	stop := cpubench.Start(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			st := base.Clone()
			st.SetAttr("id", "d"+strconv.FormatInt(i, 10))
			v, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: accounts[i%int64(len(accounts))], Trigger: engine.TriggerOffline}})
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
	b.StopTimer()
	cpu := stop()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
	b.ReportMetric(cpu/1e3, "cpu-µs/push")
	if groups := store.PushSyncs() - syncs; groups > 0 {
		b.ReportMetric(float64(b.N)/float64(groups), "pushes/sync")
	}
}
