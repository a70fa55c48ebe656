package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/internal/stack"
)

// TestAdminPingGuarded replays the attack of issue 11 (300 pings from
// anyone → 300 pushes) against the real stack: without the admin token, by
// a cross-site form post, or to a rebound Host, no ping reaches the push
// service; with the token the account's pings are rate-limited (the
// default 3 at once, then one per 20 s).
func TestAdminPingGuarded(t *testing.T) { eachServer(t, testAdminPingGuarded) }

func testAdminPingGuarded(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "guarded-device")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()
	b, err := os.ReadFile(s.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	ping := func(token, contentType, host string) int {
		t.Helper()
		body := "" // a JSON ping has its parameters in the query
		if contentType != "application/json" {
			body = "account=juliet@" + domain // what a form would send
		}
		req, err := http.NewRequest("POST", "http://"+s.AdminAddr+"/ping?account=juliet@"+domain, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Origin", "http://evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for i := range 300 {
		var got, want int
		switch i % 4 {
		case 0:
			got, want = ping("", "application/json", ""), http.StatusUnauthorized
		case 1:
			got, want = ping("", "text/plain", ""), http.StatusUnauthorized
		case 2:
			got, want = ping(token, "application/x-www-form-urlencoded", ""), http.StatusUnsupportedMediaType
		case 3:
			got, want = ping(token, "application/json", "rebound.evil.example"), http.StatusMisdirectedRequest
		}
		if got != want {
			t.Fatalf("refused ping %d: status %d, want %d", i, got, want)
		}
	}
	noNotification(t, pusher, 3*time.Second)

	start := time.Now()
	ok := 0
	for range 300 {
		switch st := ping(token, "application/json", ""); st {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("ping with the token: status %d", st)
		}
	}
	// One more ping every 20 s of the loop's duration may pass.
	if most := 3 + int(time.Since(start)/(20*time.Second)); ok < 3 || ok > most {
		t.Fatalf("%d of 300 pings with the token accepted, want 3 to %d", ok, most)
	}
	for range ok {
		waitNotification(t, pusher, 15*time.Second)
	}
	noNotification(t, pusher, 2*time.Second)
	if log := s.Push2dLog(); strings.Contains(log, token) {
		t.Error("push2d's log holds the admin token")
	}
}
