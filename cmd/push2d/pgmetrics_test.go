package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"mellium.im/xmpp"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pgstore"
	"github.com/push2/push2/internal/pgtest"
)

// TestPostgresMetrics: with the PostgreSQL store, /metrics shows the
// database up, its pool, the pending notifications and the lag of the
// oldest due one; with the database stopped, push2_store_up is 0.
func TestPostgresMetrics(t *testing.T) {
	pg := pgtest.MustStart(t, pgtest.Options{})
	st, err := pgstore.Open(context.Background(), pg.NewDatabase(t), pgstore.Options{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	due := time.Now().Add(-90 * time.Second)
	k := engine.RegKey{Account: "juliet@capulet.lit", ID: "phone"}
	for i, d := range []time.Time{due, time.Now().Add(time.Hour)} {
		id := []string{"late", "later"}[i]
		if _, err := st.RecordPush(k, []string{"s:" + id}, time.Now(), engine.OutboxEntry{ID: id, Account: k.Account, Reg: k.ID, Created: d, Due: d}); err != nil {
			t.Fatal(err)
		}
	}
	m := newMetrics()
	eng := engine.New(st, engine.NewRegistry(), engine.Config{})
	m.watchPostgres(st, eng.Outbox())
	scrape := func() string {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	got := scrape()
	for _, want := range []string{"push2_store_up 1", "push2_outbox_pending 2", "push2_store_pool_max ", "push2_sweep_leader 0"} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	var lag float64
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "push2_outbox_due_lag_seconds ") {
			lag = parseFloat(t, strings.TrimPrefix(l, "push2_outbox_due_lag_seconds "))
		}
	}
	if lag < 90 || lag > 300 {
		t.Errorf("push2_outbox_due_lag_seconds %v, want about 90", lag)
	}
	// Running, the only instance takes the lead of the sweeps.
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		eng.Outbox().Run(ctx, func(context.Context, engine.OutboxEntry) error { return errors.New("not connected") })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(scrape(), "push2_sweep_leader 1") {
		if time.Now().After(deadline) {
			t.Fatal("push2_sweep_leader is not 1 on the only running instance")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-ran
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // past the one-query-per-scrape memo
	if got := scrape(); !strings.Contains(got, "push2_store_up 0") {
		t.Error("push2_store_up is not 0 with the database stopped")
	}
}

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPostgresHealthz: with the PostgreSQL store, /healthz is 200 only
// while connected to the server and the database answers, and says the
// database's state either way: a standby (not connected) shows it, a
// stopped database makes even a connected instance unhealthy.
func TestPostgresHealthz(t *testing.T) {
	pg := pgtest.MustStart(t, pgtest.Options{})
	st, err := pgstore.Open(context.Background(), pg.NewDatabase(t), pgstore.Options{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	due := time.Now().Add(-90 * time.Second)
	k := engine.RegKey{Account: "juliet@capulet.lit", ID: "phone"}
	if _, err := st.RecordPush(k, []string{"s:late"}, time.Now(), engine.OutboxEntry{ID: "late", Account: k.Account, Reg: k.ID, Created: due, Due: due}); err != nil {
		t.Fatal(err)
	}
	d := testDaemonConfig(t, validConfig+"\n[admin]\nlisten = \"127.0.0.1:0\"\n")
	d.dbHealth = newMetrics().watchPostgres(st, d.eng.Outbox())
	ln, err := listenAdmin(d.cfg.Admin.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.serveAdmin(t.Context(), ln) }()
	t.Cleanup(func() { <-done })
	s := &adminServer{d: d, addr: ln.Addr().String()}
	get := func() adminResponse { return s.do(t, adminRequest{method: "GET", path: "/healthz"}) }

	r := get()
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "not connected") || !strings.Contains(r.body, "database: up") || !strings.Contains(r.body, "1 notifications pending") {
		t.Errorf("unconnected, database up: %d %q", r.status, r.body)
	}
	d.setSession(&xmpp.Session{}) // connected, as far as /healthz looks
	r = get()
	if r.status != http.StatusOK || !strings.HasPrefix(r.body, "ok\n") || !strings.Contains(r.body, "database: up, pool ") {
		t.Errorf("connected, database up: %d %q", r.status, r.body)
	}
	if i := strings.Index(r.body, "oldest due "); i < 0 || !strings.HasPrefix(r.body[i+len("oldest due "):], "1m3") {
		t.Errorf("connected, database up: the lag is not about 90 s: %q", r.body)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // past the one-query memo
	r = get()
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "database: not answering") {
		t.Errorf("connected, database stopped: %d %q", r.status, r.body)
	}
	d.setSession(nil)
}
