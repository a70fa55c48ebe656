package main

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/profiles"
)

// brokenStore fails every read and write once broken is set, as a store on
// a failed disk would.
type brokenStore struct {
	engine.Store
	broken atomic.Bool
}

var errBroken = errors.New("store: input/output error")

func (b *brokenStore) Registrations(account string) ([]engine.StoredRegistration, error) {
	if b.broken.Load() {
		return nil, errBroken
	}
	return b.Store.Registrations(account)
}

func (b *brokenStore) Disabled(account string) ([]engine.DisabledRecord, error) {
	if b.broken.Load() {
		return nil, errBroken
	}
	return b.Store.Disabled(account)
}

// TestAdminStoreFailureIs5xx: a store failure is push2d's problem: the
// admin interface answers 500 (not 400, which tells the caller to change
// the request), without the error's text, which goes to the log; a bad
// request still gets 400.
func TestAdminStoreFailureIs5xx(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, validConfig+"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \""+writeToken(t, testToken, 0o600)+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	store := &brokenStore{Store: memstore.New()}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.BuiltinWith(cfg.profileOptions())); err != nil {
		t.Fatal(err)
	}
	var logs syncBuilder
	d := newDaemon(cfg, engine.New(store, reg, engine.Config{}), slog.New(slog.NewTextHandler(&logs, nil)), newMetrics())
	ln, err := listenAdmin(cfg.Admin.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.serveAdmin(t.Context(), ln) }()
	t.Cleanup(func() { <-done })
	s := &adminServer{d: d, addr: ln.Addr().String()}

	requests := []adminRequest{
		{method: "GET", path: "/registrations?account=juliet@example.org"},
		{method: "GET", path: "/disabled?account=juliet@example.org"},
		{method: "POST", path: "/ping?account=juliet@example.org", contentType: "application/json"},
	}
	for _, ar := range requests {
		ar.token = testToken
		bad := ar
		bad.path = strings.Replace(ar.path, "juliet@example.org", "juliet@@example.org", 1)
		if r := s.do(t, bad); r.status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %q, want 400", bad.method, bad.path, r.status, r.body)
		}
	}
	store.broken.Store(true)
	for _, ar := range requests {
		ar.token = testToken
		r := s.do(t, ar)
		if r.status != http.StatusInternalServerError {
			t.Errorf("%s %s on a failing store: %d %q, want 500", ar.method, ar.path, r.status, r.body)
		}
		if strings.Contains(r.body, errBroken.Error()) {
			t.Errorf("%s %s: the store's error is in the response: %q", ar.method, ar.path, r.body)
		}
	}
	if n := strings.Count(logs.String(), errBroken.Error()); n != len(requests) {
		t.Errorf("%d log lines name the store error, want %d:\n%s", n, len(requests), logs.String())
	}
}

// syncBuilder is a strings.Builder safe for the server's goroutines.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
