package pgstore

import (
	"context"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/pgtest"
	"github.com/push2/push2/profiles"
)

const millionAccounts = 1_000_000

func millionAccount(i int) string { return "u" + strconv.Itoa(i) + "@capulet.lit" }

const millionEnable = `<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>https://push.example.com/adlfkjadafdasf</client>` +
	`<match profile="urn:xmpp:push2:match:important"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`

// loadMillion fills st with millionAccounts registrations (one per account,
// the stored form Enable writes, a client of its own each) with one COPY,
// and analyzes the table.
func loadMillion(b *testing.B, st *Store, reg *engine.Registry) time.Duration {
	r, err := engine.ParseEnable(context.Background(), reg, engine.Limits{}, millionAccount(0), "phone", stanza.MustParse(millionEnable))
	if err != nil {
		b.Fatal(err)
	}
	tmpl := r.Enable.String()
	const client = "https://push.example.com/adlfkjadafdasf"
	if !strings.Contains(tmpl, client) {
		b.Fatalf("stored form %s lacks the client", tmpl)
	}
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	ctx := context.Background()
	err = pgx.BeginFunc(ctx, st.pool, func(tx pgx.Tx) error {
		return copyTable(ctx, tx, "push2_registrations", []string{"account", "id", "created", "enable", "suspended"}, func(emit func(...any) error) error {
			for i := range millionAccounts {
				if err := emit(millionAccount(i), "phone", created, strings.Replace(tmpl, client, client+"/"+strconv.Itoa(i), 1), false); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err == nil {
		_, err = st.pool.Exec(ctx, `ANALYZE`)
	}
	if err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// BenchmarkMillionPostgres: enable and lookup latency on a PostgreSQL store
// with 1,000,000 registrations (a private PostgreSQL 15 cluster on
// 127.0.0.1, fsync on: pgtest Durable), loaded with one COPY. Each
// iteration is one round of 1,000 lookups (Engine.Registrations of an
// account drawn uniformly from the million: on a store several instances
// share the engine keeps no registration cache, so this read and parse is
// what every evaluation does first) and 300 enables of a second device on
// such an account (parsed, stored, committed), interleaved one by one. It
// reports the median over the rounds of each round's p50 and p99 in µs and
// logs min/median/max.
//
//	go test -run '^$' -bench MillionPostgres -benchtime 3x -timeout 30m ./engine/pgstore/
func BenchmarkMillionPostgres(b *testing.B) {
	srv := pgtest.MustStart(b, pgtest.Options{Durable: true})
	st, err := Open(context.Background(), srv.NewDatabase(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		b.Fatal(err)
	}
	took := loadMillion(b, st, reg)
	if c, err := st.Count(); err != nil || c.Registrations != millionAccounts {
		b.Fatalf("loaded %d registrations (%v), want %d", c.Registrations, err, millionAccounts)
	}
	b.Logf("loaded %d registrations with COPY in %v", millionAccounts, took.Round(time.Millisecond))
	e := engine.New(st, reg, engine.Config{})
	ctx := context.Background()
	el := stanza.MustParse(strings.Replace(millionEnable, "adlfkjadafdasf", "second-device", 1))
	const lookups, enables = 1000, 300
	var lp50, lp99, ep50, ep99 []float64
	round := 0
	for b.Loop() {
		var look, en []time.Duration
		for i := range lookups {
			acct := millionAccount(rand.IntN(millionAccounts))
			t0 := time.Now()
			regs, err := e.Registrations(ctx, acct)
			look = append(look, time.Since(t0))
			if err != nil || len(regs) == 0 {
				b.Fatalf("lookup %s: %d registrations, %v", acct, len(regs), err)
			}
			if i%(lookups/enables) == 0 && len(en) < enables {
				acct := millionAccount(rand.IntN(millionAccounts))
				t0 := time.Now()
				_, _, err := e.Enable(ctx, acct, "laptop-"+strconv.Itoa(round), el)
				en = append(en, time.Since(t0))
				if err != nil {
					b.Fatalf("enable %s: %v", acct, err)
				}
			}
		}
		p := func(d []time.Duration, q float64) float64 {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			return float64(d[int(q*float64(len(d)-1))].Microseconds())
		}
		lp50, lp99 = append(lp50, p(look, 0.5)), append(lp99, p(look, 0.99))
		ep50, ep99 = append(ep50, p(en, 0.5)), append(ep99, p(en, 0.99))
		round++
	}
	b.ReportMetric(median(lp50), "lookup-p50-µs")
	b.ReportMetric(median(lp99), "lookup-p99-µs")
	b.ReportMetric(median(ep50), "enable-p50-µs")
	b.ReportMetric(median(ep99), "enable-p99-µs")
	b.Logf("%d rounds of %d lookups and %d enables over %d registrations, min/median/max µs: lookup p50 %s, p99 %s; enable p50 %s, p99 %s",
		round, lookups, enables, millionAccounts, mmm(lp50, "%.0f"), mmm(lp99, "%.0f"), mmm(ep50, "%.0f"), mmm(ep99, "%.0f"))

}
