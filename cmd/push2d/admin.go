package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pgstore"
)

// adminHandler serves the admin interface of the listener at addr:
//
//	GET /healthz                     200 "ok" while connected to the server (and, on PostgreSQL, the database answers), else 503
//	GET /metrics                     Prometheus metrics
//	GET /profiles                    the loaded profiles (JSON)
//	GET /registrations?account=JID   an account's registrations (JSON)           token
//	GET /disabled?account=JID        registrations disabled for failing, and why  token
//	GET /outbox                      the number of notifications not yet known delivered  token
//	POST /ping?account=JID[&id=ID…]  push to all (or the given) registrations now  token, JSON, rate-limited
//
// The open three carry nothing per account (profile URIs are in every
// account's disco#info already), so monitoring can use them without the
// token; adminguard.go says what guards the rest. Every JSON answer is an
// adminjson.go type (snake_case names, documented in docs/push2d.md).
func (d *daemon) adminHandler(addr net.Addr) http.Handler {
	g := newAdminGuard(d.cfg.Admin, addr, d.metrics, d.log)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		status, body := d.health()
		if status != http.StatusOK {
			http.Error(w, body, status)
			return
		}
		fmt.Fprint(w, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /profiles", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, profilesJSON(d.eng.Registry().Profiles()))
	})
	mux.HandleFunc("GET /disabled", g.needToken(func(w http.ResponseWriter, r *http.Request) {
		recs, err := d.eng.Disabled(r.URL.Query().Get("account"))
		if err != nil {
			d.adminError(w, r, "account", err)
			return
		}
		writeJSON(w, disabledsJSON(recs))
	}))
	mux.HandleFunc("POST /ping", g.needToken(g.jsonBody(func(w http.ResponseWriter, r *http.Request) {
		account, ids, err := pingParams(r)
		if err != nil {
			http.Error(w, "ping: "+err.Error(), http.StatusBadRequest)
			return
		}
		acct, err := engine.NormalizeJID(account)
		if err != nil {
			http.Error(w, "ping: the account is not a valid JID", http.StatusBadRequest)
			return
		}
		if !g.limitPing(w, r, acct.Bare().String()) {
			return
		}
		ns, err := d.eng.Ping(r.Context(), account, ids)
		if err != nil {
			d.adminError(w, r, "ping", err)
			return
		}
		ids = []string{}
		for _, n := range ns {
			ids = append(ids, n.Reg.ID)
		}
		writeJSON(w, pingJSON{Pushed: ids})
	})))
	mux.HandleFunc("GET /outbox", g.needToken(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, outboxJSON{Entries: d.eng.Outbox().Len()})
	}))
	mux.HandleFunc("GET /registrations", g.needToken(func(w http.ResponseWriter, r *http.Request) {
		account := r.URL.Query().Get("account")
		regs, err := d.eng.Registrations(r.Context(), account)
		if err != nil {
			d.adminError(w, r, "account", err)
			return
		}
		writeJSON(w, registrationsJSON(regs))
	}))
	return g.checkHost(mux)
}

// health is /healthz's answer: 200 "ok" while connected to the XMPP server
// and, with the PostgreSQL store, while the database answers; 503 with the
// reason otherwise. With PostgreSQL a second line gives the database's
// state (the pool, the notifications pending and how late the oldest due
// one is: push2_outbox_due_lag_seconds), so that a standby that is not
// ready still shows the database it would work on.
func (d *daemon) health() (int, string) {
	status, first := http.StatusOK, "ok"
	if d.session() == nil {
		status, first = http.StatusServiceUnavailable, "not connected to the XMPP server"
	}
	if d.dbHealth == nil {
		return status, first + "\n"
	}
	h := d.dbHealth()
	if !h.Up {
		return http.StatusServiceUnavailable, first + "\ndatabase: not answering (pool: " + poolLine(h) + ")\n"
	}
	return status, fmt.Sprintf("%s\ndatabase: up, pool %s, %d notifications pending, oldest due %v late\n",
		first, poolLine(h), h.Pending, h.DueLag.Round(time.Millisecond))
}

func poolLine(h pgstore.Health) string {
	return fmt.Sprintf("%d of %d connections open, %d in use", h.TotalConns, h.MaxConns, h.AcquiredConns)
}

// errBothPingForms: the ping's parameters come from the query or from the
// JSON body, never a mix, so that what runs is what one of them says.
var errBothPingForms = errors.New("give account and id in the query or in the JSON body, not both")

// pingParams reads a ping's account and registration ids, from the query
// (?account=JID&id=ID…) or from a JSON body {"account": JID, "id": [ID…]}.
// No id means every registration of the account.
func pingParams(r *http.Request) (string, []string, error) {
	q := r.URL.Query()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", nil, fmt.Errorf("reading the body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return q.Get("account"), q["id"], nil
	}
	if q.Has("account") || q.Has("id") {
		return "", nil, errBothPingForms
	}
	var p struct {
		Account string   `json:"account"`
		ID      []string `json:"id"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || dec.More() {
		return "", nil, errors.New(`the body is not a JSON object {"account": JID, "id": [ID, …]}`)
	}
	if len(p.ID) == 0 {
		p.ID = nil
	}
	return p.Account, p.ID, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serveAdmin listens on the configured loopback address until ctx ends.
func (d *daemon) serveAdmin(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: d.adminHandler(ln.Addr()), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listenAdmin listens on addr, which must be a loopback address
// (checkAdminListen).
func listenAdmin(addr string) (net.Listener, error) {
	if err := checkAdminListen(addr); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}
