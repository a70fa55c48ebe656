package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/push2/push2/engine"
)

// adminHandler serves the admin interface:
//
//	GET /healthz                     200 "ok" while connected to the server, else 503
//	GET /metrics                     Prometheus metrics
//	GET /profiles                    the loaded profiles (JSON)
//	GET /registrations?account=JID   an account's registrations (JSON)
//	GET /disabled?account=JID        registrations disabled for failing, and why
//	GET /outbox                      the number of notifications not yet known delivered
//	POST /ping?account=JID[&id=ID…]  push to all (or the given) registrations now
func (d *daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if d.session() == nil {
			http.Error(w, "not connected to the XMPP server", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /profiles", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, d.eng.Registry().Profiles())
	})
	mux.HandleFunc("GET /disabled", func(w http.ResponseWriter, r *http.Request) {
		recs, err := d.eng.Disabled(r.URL.Query().Get("account"))
		if err != nil {
			http.Error(w, "account: "+err.Error(), http.StatusBadRequest)
			return
		}
		if recs == nil {
			recs = []engine.DisabledRecord{}
		}
		writeJSON(w, recs)
	})
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ns, err := d.eng.Ping(r.Context(), q.Get("account"), q["id"])
		if err != nil {
			http.Error(w, "ping: "+err.Error(), http.StatusBadRequest)
			return
		}
		ids := []string{}
		for _, n := range ns {
			ids = append(ids, n.Reg.ID)
		}
		writeJSON(w, map[string]any{"pushed": ids})
	})
	mux.HandleFunc("GET /outbox", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]int{"entries": d.eng.Outbox().Len()})
	})
	mux.HandleFunc("GET /registrations", func(w http.ResponseWriter, r *http.Request) {
		account := r.URL.Query().Get("account")
		regs, err := d.eng.Registrations(account)
		if err != nil {
			http.Error(w, "account: "+err.Error(), http.StatusBadRequest)
			return
		}
		type match struct {
			Profile string   `json:"profile"`
			Send    string   `json:"send"`
			Grace   string   `json:"grace,omitempty"`
			Filters []string `json:"filters,omitempty"`
		}
		type reg struct {
			ID      string    `json:"id"`
			Service string    `json:"service"`
			Client  string    `json:"client_sha256"` // the client token routes to a device: shown hashed
			Created time.Time `json:"created"`
			Matches []match   `json:"matches"`
		}
		out := []reg{}
		for _, r := range regs {
			h := sha256.Sum256([]byte(r.Client))
			x := reg{ID: r.ID, Service: r.Service, Client: hex.EncodeToString(h[:8]), Created: r.Created}
			for _, m := range r.Matches {
				mm := match{Profile: m.Profile, Send: m.SendNS}
				if m.Grace > 0 {
					mm.Grace = m.Grace.String()
				}
				for _, f := range m.Filters {
					mm.Filters = append(mm.Filters, f.JID)
				}
				x.Matches = append(x.Matches, mm)
			}
			out = append(out, x)
		}
		writeJSON(w, out)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serveAdmin listens on the configured loopback address until ctx ends.
func (d *daemon) serveAdmin(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
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

// listenAdmin refuses non-loopback addresses: the admin interface has no
// authentication.
func listenAdmin(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("admin.listen %q: must be a loopback address (127.0.0.1, [::1] or localhost)", addr)
	}
	return net.Listen("tcp", addr)
}
