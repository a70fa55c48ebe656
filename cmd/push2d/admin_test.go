package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/push2/push2/engine/stanza"
)

// testToken is the admin token of the tests' daemons.
const testToken = "dGVzdC10b2tlbi1ub3QtZm9yLXByb2R1Y3Rpb24K"

// writeToken writes tok to a file of the given mode and returns its path.
func writeToken(t *testing.T, tok string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is subject to the umask; Chmod is not.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// adminServer is the real admin handler of a daemon, served over HTTP on
// 127.0.0.1, with juliet@example.org holding two registrations.
type adminServer struct {
	d    *daemon
	addr string // host:port of the listener
}

// startAdmin serves a daemon configured with validConfig plus adminTOML
// (the body of its [admin] table).
func startAdmin(t *testing.T, adminTOML string) *adminServer {
	t.Helper()
	d := testDaemonConfig(t, validConfig+"\n[admin]\nlisten = \"127.0.0.1:0\"\n"+adminTOML)
	for _, r := range [][2]string{{"juliet@example.org", "phone"}, {"juliet@example.org", "laptop"}, {"romeo@example.org", "phone"}} {
		if _, _, err := d.eng.Enable(t.Context(), r[0], r[1], stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>p.example</service><client>c</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := listenAdmin(d.cfg.Admin.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.serveAdmin(t.Context(), ln) }()
	t.Cleanup(func() { <-done })
	return &adminServer{d: d, addr: ln.Addr().String()}
}

// adminRequest is one request to the admin interface.
type adminRequest struct {
	method, path string
	host         string // Host header; empty: the listener's address
	token        string // bearer token; empty: no Authorization header
	contentType  string
	body         string
	origin       string
}

type adminResponse struct {
	status int
	header http.Header
	body   string
}

func (s *adminServer) do(t *testing.T, ar adminRequest) adminResponse {
	t.Helper()
	req, err := http.NewRequest(ar.method, "http://"+s.addr+ar.path, strings.NewReader(ar.body))
	if err != nil {
		t.Fatal(err)
	}
	if ar.host != "" {
		req.Host = ar.host
	}
	if ar.token != "" {
		req.Header.Set("Authorization", "Bearer "+ar.token)
	}
	if ar.contentType != "" {
		req.Header.Set("Content-Type", ar.contentType)
	}
	if ar.origin != "" {
		req.Header.Set("Origin", ar.origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return adminResponse{resp.StatusCode, resp.Header, string(b)}
}

// pushes is how many notifications the daemon has queued (it is not
// connected, so every accepted ping stays in the outbox).
func (s *adminServer) pushes() int { return s.d.eng.Outbox().Len() }

// TestAdminPingNeedsToken: 300 pings without the token, or with a wrong
// one, push nothing; neither does a ping while no token is configured.
func TestAdminPingNeedsToken(t *testing.T) {
	s := startAdmin(t, "token_file = \""+writeToken(t, testToken, 0o600)+"\"\n")
	for i := range 300 {
		tok := ""
		if i%2 == 1 {
			tok = testToken[:len(testToken)-1] + "X"
		}
		r := s.do(t, adminRequest{method: "POST", path: "/ping?account=juliet@example.org", token: tok, contentType: "application/json"})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("ping %d with token %q: %d %q, want 401 with WWW-Authenticate", i, tok, r.status, r.body)
		}
	}
	if n := s.pushes(); n != 0 {
		t.Errorf("%d pushes after 300 unauthenticated pings, want 0", n)
	}
	if got := testutil.ToFloat64(s.d.metrics.adminRefused.WithLabelValues("token")); got != 300 {
		t.Errorf("push2_admin_refused_total{reason=token} = %v, want 300", got)
	}
	// Registration data needs it too; health, metrics and profiles do not.
	for _, p := range []string{"/registrations?account=juliet@example.org", "/disabled?account=juliet@example.org", "/outbox"} {
		if r := s.do(t, adminRequest{method: "GET", path: p}); r.status != http.StatusUnauthorized || strings.Contains(r.body, "phone") {
			t.Errorf("GET %s without token: %d %q", p, r.status, r.body)
		}
		if r := s.do(t, adminRequest{method: "GET", path: p, token: testToken}); r.status != http.StatusOK {
			t.Errorf("GET %s with the token: %d %q", p, r.status, r.body)
		}
	}
	if r := s.do(t, adminRequest{method: "GET", path: "/registrations?account=juliet@example.org", token: testToken}); !strings.Contains(r.body, `"phone"`) {
		t.Errorf("registrations with the token: %q", r.body)
	}
	for _, p := range []string{"/metrics", "/profiles"} {
		if r := s.do(t, adminRequest{method: "GET", path: p}); r.status != http.StatusOK {
			t.Errorf("GET %s without token: %d %q", p, r.status, r.body)
		}
	}
	if r := s.do(t, adminRequest{method: "GET", path: "/healthz"}); r.status != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz of an unconnected daemon: %d %q", r.status, r.body)
	}

	// Without admin.token_file, the guarded endpoints are refused with
	// the way out.
	open := startAdmin(t, "")
	for range 300 {
		r := open.do(t, adminRequest{method: "POST", path: "/ping?account=juliet@example.org", contentType: "application/json"})
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "admin.token_file") {
			t.Fatalf("ping without a configured token: %d %q", r.status, r.body)
		}
	}
	if r := open.do(t, adminRequest{method: "GET", path: "/registrations?account=juliet@example.org"}); r.status != http.StatusForbidden {
		t.Errorf("registrations without a configured token: %d %q", r.status, r.body)
	}
	if n := open.pushes(); n != 0 {
		t.Errorf("%d pushes with no token configured, want 0", n)
	}
}

// TestAdminPingRateLimited: with the token, an account gets ping_burst
// pings, then 429 with Retry-After; other accounts keep theirs.
func TestAdminPingRateLimited(t *testing.T) {
	s := startAdmin(t, "token_file = \""+writeToken(t, testToken, 0o600)+"\"\nping_burst = 3\nping_interval = \"1h\"\n")
	ok, limited := 0, 0
	for i := range 300 {
		// The account's spelling varies; the bucket is the account's.
		acct := "juliet@example.org"
		if i%3 == 0 {
			acct = "Juliet@Example.ORG"
		}
		r := s.do(t, adminRequest{method: "POST", path: "/ping?account=" + acct, token: testToken, contentType: "application/json"})
		switch r.status {
		case http.StatusOK:
			ok++
			if !strings.Contains(r.body, `"phone"`) || !strings.Contains(r.body, `"laptop"`) {
				t.Errorf("ping answer: %q", r.body)
			}
		case http.StatusTooManyRequests:
			limited++
			secs, err := strconv.Atoi(r.header.Get("Retry-After"))
			if err != nil || secs < 1 || secs > 3600 {
				t.Fatalf("429 with Retry-After %q", r.header.Get("Retry-After"))
			}
		default:
			t.Fatalf("ping %d: %d %q", i, r.status, r.body)
		}
	}
	if ok != 3 || limited != 297 {
		t.Errorf("300 pings: %d accepted, %d limited; want 3 and 297", ok, limited)
	}
	if n := s.pushes(); n != 6 {
		t.Errorf("%d pushes, want 6 (3 pings × 2 registrations)", n)
	}
	// The JSON body form, for another account, has its own bucket.
	r := s.do(t, adminRequest{method: "POST", path: "/ping", token: testToken, contentType: "application/json; charset=utf-8", body: `{"account": "romeo@example.org", "id": ["phone"]}`})
	if r.status != http.StatusOK || !strings.Contains(r.body, `"phone"`) {
		t.Errorf("ping of romeo with a JSON body: %d %q", r.status, r.body)
	}
	for _, tc := range []struct{ path, body string }{
		{"/ping?account=romeo@example.org", `{"account": "romeo@example.org"}`},
		{"/ping", `{"account": "romeo@example.org", "all": true}`},
		{"/ping", `account=romeo@example.org`},
		{"/ping", `{"account": "not a jid@@"}`},
	} {
		if r := s.do(t, adminRequest{method: "POST", path: tc.path, token: testToken, contentType: "application/json", body: tc.body}); r.status != http.StatusBadRequest {
			t.Errorf("ping %s %s: %d %q, want 400", tc.path, tc.body, r.status, r.body)
		}
	}
	if n := s.pushes(); n != 7 {
		t.Errorf("%d pushes, want 7", n)
	}
}

// TestAdminCrossOriginFormPost: what a web page can make the operator's
// browser send (a form or text/plain post, no Authorization header) is
// refused, and so is such a body even with the token; the CORS preflight a
// JSON post would need is never granted.
func TestAdminCrossOriginFormPost(t *testing.T) {
	s := startAdmin(t, "token_file = \""+writeToken(t, testToken, 0o600)+"\"\n")
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		r := s.do(t, adminRequest{method: "POST", path: "/ping?account=juliet@example.org", contentType: ct, origin: "http://evil.example", body: `{"account":"juliet@example.org"}`})
		if r.status != http.StatusUnauthorized {
			t.Errorf("cross-origin %q post: %d %q, want 401", ct, r.status, r.body)
		}
		r = s.do(t, adminRequest{method: "POST", path: "/ping?account=juliet@example.org", token: testToken, contentType: ct, body: "x"})
		if r.status != http.StatusUnsupportedMediaType || !strings.Contains(r.body, "application/json") {
			t.Errorf("%q post with the token: %d %q, want 415", ct, r.status, r.body)
		}
	}
	r := s.do(t, adminRequest{method: "OPTIONS", path: "/ping", origin: "http://evil.example"})
	if r.status < 400 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight: %d %v", r.status, r.header)
	}
	if n := s.pushes(); n != 0 {
		t.Errorf("%d pushes, want 0", n)
	}
}

// TestAdminHostHeader: a request whose Host does not name the listener
// (DNS rebinding) is refused, on every path and before the token counts.
func TestAdminHostHeader(t *testing.T) {
	s := startAdmin(t, "token_file = \""+writeToken(t, testToken, 0o600)+"\"\n")
	_, port, _ := net.SplitHostPort(s.addr)
	for _, host := range []string{"evil.example", "evil.example:" + port, "127.0.0.1:1", "[::1]:" + port, "localhost.evil.example:" + port, "127.0.0.2:" + port} {
		for _, p := range []string{"/healthz", "/metrics", "/registrations?account=juliet@example.org"} {
			r := s.do(t, adminRequest{method: "GET", path: p, host: host, token: testToken})
			if r.status != http.StatusMisdirectedRequest || strings.Contains(r.body, "phone") {
				t.Errorf("GET %s with Host %q: %d %q, want 421", p, host, r.status, r.body)
			}
		}
		if r := s.do(t, adminRequest{method: "POST", path: "/ping?account=juliet@example.org", host: host, token: testToken, contentType: "application/json"}); r.status != http.StatusMisdirectedRequest {
			t.Errorf("ping with Host %q: %d %q", host, r.status, r.body)
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST:" + port} {
		if r := s.do(t, adminRequest{method: "GET", path: "/registrations?account=juliet@example.org", host: host, token: testToken}); r.status != http.StatusOK {
			t.Errorf("Host %q: %d %q", host, r.status, r.body)
		}
	}
	if n := s.pushes(); n != 0 {
		t.Errorf("%d pushes, want 0", n)
	}
}

func TestAllowedHosts(t *testing.T) {
	for _, tc := range []struct {
		listen, addr string
		want         []string
	}{
		{"127.0.0.1:5380", "127.0.0.1:5380", []string{"127.0.0.1:5380", "localhost:5380"}},
		{"localhost:0", "127.0.0.1:4711", []string{"127.0.0.1:4711", "localhost:4711"}},
		{"[::1]:5380", "[::1]:5380", []string{"[::1]:5380", "localhost:5380"}},
		{"127.0.0.1:80", "127.0.0.1:80", []string{"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}},
		{"127.0.0.2:5380", "127.0.0.2:5380", []string{"127.0.0.2:5380"}},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		got := allowedHosts(tc.listen, addr)
		if len(got) != len(tc.want) {
			t.Errorf("allowedHosts(%q, %s) = %v, want %v", tc.listen, tc.addr, got, tc.want)
		}
		for _, h := range tc.want {
			if !got[h] {
				t.Errorf("allowedHosts(%q, %s) = %v, lacks %q", tc.listen, tc.addr, got, h)
			}
		}
	}
}

// TestAdminTokenFile: a token file others may read is refused like ssh
// refuses such a key, with the fix; errors and printed configs never hold
// the token.
func TestAdminTokenFile(t *testing.T) {
	cfgWith := func(tokenFile string) string {
		return validConfig + "\n[admin]\ntoken_file = \"" + tokenFile + "\"\n"
	}
	for _, tc := range []struct {
		name, tok string
		mode      os.FileMode
		want      string
	}{
		{"world-readable", testToken, 0o644, "chmod 600"},
		{"group-readable", testToken, 0o640, "chmod 600"},
		{"group-writable", testToken, 0o620, "chmod 600"},
		{"short", "abc123", 0o600, "shorter than 16"},
		{"not a header value", "a token with spaces in it", 0o600, "b64token"},
		{"empty", "", 0o600, "shorter than 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, cfgWith(writeToken(t, tc.tok, tc.mode))))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if tc.tok != "" && strings.Contains(err.Error(), tc.tok) {
				t.Errorf("the token appears in the error: %v", err)
			}
		})
	}
	if _, err := loadConfig(writeConfig(t, cfgWith(filepath.Join(t.TempDir(), "missing")))); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("missing token file: %v", err)
	}
	cfg, err := loadConfig(writeConfig(t, cfgWith(writeToken(t, testToken, 0o400))))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Admin.Token.matches(testToken) || cfg.Admin.Token.matches(testToken+"x") || cfg.Admin.Token.matches("") {
		t.Error("token comparison")
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(f, cfg); strings.Contains(s, testToken) || !strings.Contains(s, "[redacted]") {
			t.Errorf("Sprintf(%q, cfg) shows the token or no [redacted]", f)
		}
	}
	// A token inline in push2d.toml is not a setting.
	if _, err := loadConfig(writeConfig(t, validConfig+"\n[admin]\ntoken = \""+testToken+"\"\n")); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("inline token: %v", err)
	}
}

func TestPingLimiterForgetsFullBuckets(t *testing.T) {
	l := newPingLimiter(time.Second, 2)
	now := time.Unix(1e9, 0)
	for i := range minSweepSize {
		if d := l.reserve(fmt.Sprint("user", i, "@example.org"), now); d != 0 {
			t.Fatalf("first ping of a new account waits %v", d)
		}
	}
	if d := l.reserve("user0@example.org", now); d != 0 {
		t.Fatal("second ping within the burst waits")
	}
	if d := l.reserve("user0@example.org", now); d <= 0 || d > time.Second {
		t.Fatalf("third ping waits %v, want (0, 1s]", d)
	}
	// 1.5 s later every bucket but user0's is full again; a new
	// account sweeps them.
	later := now.Add(1500 * time.Millisecond)
	l.reserve("new@example.org", later)
	if len(l.buckets) != 2 {
		t.Errorf("%d buckets after the sweep, want 2 (user0's, not yet full, and the new one)", len(l.buckets))
	}
	if d := l.reserve("user0@example.org", later); d != 0 {
		t.Errorf("user0's refilled ping waits %v", d)
	}
	if d := l.reserve("user0@example.org", later); d <= 0 {
		t.Error("user0's bucket was reset by the sweep")
	}
}
