package pgstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/pgtest"
	"github.com/push2/push2/profiles"
)

const (
	benchAccounts = 64
	benchInFlight = 64
	benchBurst    = 2000
)

// benchEngine is an engine on st with one registration on each of
// benchAccounts accounts.
func benchEngine(b *testing.B, st engine.Store) *engine.Engine {
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		b.Fatal(err)
	}
	e := engine.New(st, reg, engine.Config{})
	for i := range benchAccounts {
		el := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>c` + fmt.Sprint(i) +
			`</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)
		if _, _, err := e.Enable(context.Background(), fmt.Sprintf("user%d@capulet.lit", i), "phone", el); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// burst evaluates benchBurst messages, benchInFlight at once, each for
// one of the accounts, each pushed (notification and dedupe marks
// committed before Evaluate returns), and returns the pushes per second.
func burst(b *testing.B, e *engine.Engine, tag string) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range benchInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := n.Add(1)
				if i > benchBurst {
					return
				}
				acct := fmt.Sprintf("user%d@capulet.lit", i%benchAccounts)
				st := stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="` + acct +
					`" type="chat" id="` + tag + fmt.Sprint(i) + `"><body>Art thou not Romeo?</body></message>`)
				v, err := e.Evaluate(context.Background(), &engine.Event{Stanza: st, Context: engine.Context{Account: acct, Trigger: engine.TriggerOffline}})
				if err != nil || len(v.Notifications) != 1 {
					b.Errorf("not pushed: %v %+v", err, v)
					return
				}
			}
		}()
	}
	wg.Wait()
	return benchBurst / time.Since(t0).Seconds()
}

// BenchmarkPushPostgresVsPebble: pushes/s through the engine (Evaluate
// of a message that is pushed: the notification and its dedupe marks
// committed durably) with the PostgreSQL store (a private PostgreSQL 15
// cluster on 127.0.0.1 with fsync on, pgtest Durable) and with the Pebble
// store, in the same run: each iteration is one burst of 2,000 messages,
// 64 in flight over 64 accounts, on each store, the order alternating.
// Run with -benchtime 3x for three rounds; it logs min/median/max.
//
//	go test -run '^$' -bench PushPostgresVsPebble -benchtime 3x ./engine/pgstore/
func BenchmarkPushPostgresVsPebble(b *testing.B) {
	srv := pgtest.MustStart(b, pgtest.Options{Durable: true})
	pg, err := Open(context.Background(), srv.NewDatabase(b), Options{MaxConns: benchInFlight})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	pb, err := pebblestore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer pb.Close()
	epg, epb := benchEngine(b, pg), benchEngine(b, pb)
	var pgRates, pbRates, ratios []float64
	round := 0
	for b.Loop() {
		tag := fmt.Sprintf("r%d-", round)
		var rpg, rpb float64
		if round%2 == 0 {
			rpg = burst(b, epg, tag)
			rpb = burst(b, epb, tag)
		} else {
			rpb = burst(b, epb, tag)
			rpg = burst(b, epg, tag)
		}
		pgRates, pbRates, ratios = append(pgRates, rpg), append(pbRates, rpb), append(ratios, rpg/rpb)
		round++
	}
	b.ReportMetric(median(pgRates), "postgres-pushes/s")
	b.ReportMetric(median(pbRates), "pebble-pushes/s")
	b.ReportMetric(median(ratios), "postgres/pebble")
	b.Logf("%d rounds of %d pushes, min/median/max: postgres %s pushes/s, pebble %s pushes/s, postgres/pebble %s",
		round, benchBurst, mmm(pgRates, "%.0f"), mmm(pbRates, "%.0f"), mmm(ratios, "%.2f"))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func mmm(v []float64, f string) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return strings.Join([]string{fmt.Sprintf(f, s[0]), fmt.Sprintf(f, s[len(s)/2]), fmt.Sprintf(f, s[len(s)-1])}, " / ")
}
