package main

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	m.watchPostgres(st)
	scrape := func() string {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	got := scrape()
	for _, want := range []string{"push2_store_up 1", "push2_outbox_pending 2", "push2_store_pool_max "} {
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
