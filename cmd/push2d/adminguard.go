package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// The admin interface is reachable by every local user and, through the
// operator's browser, by every web page the operator visits. Its defences,
// in the order a request meets them (docs/push2d.md "Admin interface"):
//
//  1. the listener is loopback only (checkAdminListen, at load time, so
//     that `push2d check` refuses what start-up refuses);
//  2. the Host header must name the listener (DNS rebinding: a page of
//     evil.example whose name is re-pointed at 127.0.0.1 sends
//     Host: evil.example);
//  3. registration data and state changes need the bearer token of
//     admin.token_file (other local users; a browser never adds an
//     Authorization header on its own);
//  4. a state change needs Content-Type: application/json: a cross-site
//     page can only send form or text/plain bodies without a CORS
//     preflight, which push2d never answers;
//  5. pings are rate-limited per account (a token bucket), so that even a
//     leaked token cannot turn push2d into a push flood against a device.

// checkAdminListen refuses an admin.listen that is not a loopback address.
// Config.validate calls it, so start-up and `push2d check` give the same
// answer; listenAdmin calls it again for callers that skip validation.
func checkAdminListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin.listen %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("admin.listen %q: must be a loopback address (127.0.0.1, [::1] or localhost): the admin interface serves registration data and pushes on request", addr)
	}
	return nil
}

// adminToken is the admin interface's bearer token. push2d keeps only its
// SHA-256: comparing two digests of fixed length keeps the constant-time
// compare independent of the presented token's length, and a Config printed
// by mistake shows "[redacted]" (String, GoString, LogValue), never a
// usable value.
type adminToken struct {
	sum [sha256.Size]byte
	set bool
}

func (t adminToken) configured() bool { return t.set }

// matches reports whether presented is the token, in constant time.
func (t adminToken) matches(presented string) bool {
	s := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(s[:], t.sum[:]) == 1 && t.set
}

func (adminToken) String() string       { return "[redacted]" }
func (adminToken) GoString() string     { return "[redacted]" }
func (adminToken) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// minTokenLen is the shortest token accepted: 16 characters of base64 are
// 96 bits, out of reach of guessing over a loopback socket.
const minTokenLen = 16

// readAdminToken reads admin.token_file. Like ssh with a private key, it
// refuses a file that group or others may read or write: the token is the
// only thing between any local user and every account's registrations.
// Errors name the file and the fix, never its content.
func readAdminToken(path string) (adminToken, error) {
	f, err := os.Open(path)
	if err != nil {
		return adminToken{}, fmt.Errorf("admin.token_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return adminToken{}, fmt.Errorf("admin.token_file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return adminToken{}, fmt.Errorf("admin.token_file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return adminToken{}, fmt.Errorf("admin.token_file %s is accessible by group or others (mode %04o): other users could read the token; run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return adminToken{}, fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	const howTo = "create one with: install -m 600 /dev/null FILE && head -c32 /dev/urandom | base64 > FILE"
	if len(tok) < minTokenLen {
		return adminToken{}, fmt.Errorf("admin.token_file %s: the token is shorter than %d characters; %s", path, minTokenLen, howTo)
	}
	if !isBearerToken(tok) {
		return adminToken{}, fmt.Errorf("admin.token_file %s: the token may only hold letters, digits and -._~+/= (RFC 6750 b64token); %s", path, howTo)
	}
	return adminToken{sum: sha256.Sum256([]byte(tok)), set: true}, nil
}

// isBearerToken reports whether s is an RFC 6750 section 2.1 b64token, so
// that it travels in an Authorization header unchanged.
func isBearerToken(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for _, c := range body {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("-._~+/", c):
		default:
			return false
		}
	}
	return true
}

// adminGuard applies the checks listed at the top of this file.
type adminGuard struct {
	hosts   map[string]bool // Host header values that name the listener
	token   adminToken
	pings   *pingLimiter
	refused *prometheus.CounterVec
	log     *slog.Logger
	// logRefusals keeps a flood of refused requests from flooding the log:
	// the first is logged, then at most one a minute; the metric counts
	// them all.
	logRefusals rate.Sometimes
}

func newAdminGuard(cfg AdminConfig, addr net.Addr, m *metrics, log *slog.Logger) *adminGuard {
	return &adminGuard{
		hosts:       allowedHosts(cfg.Listen, addr),
		token:       cfg.Token,
		pings:       newPingLimiter(cfg.PingInterval.Duration, cfg.PingBurst),
		refused:     m.adminRefused,
		log:         log,
		logRefusals: rate.Sometimes{First: 1, Interval: time.Minute},
	}
}

// allowedHosts lists the Host header values that name the listener at addr
// (configured as listen): its address, the configured host name, and
// localhost when the listener is on 127.0.0.1 or ::1, each with the port
// (and without it when the port is 80, as browsers omit it then).
func allowedHosts(listen string, addr net.Addr) map[string]bool {
	hosts := map[string]bool{}
	ip, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return hosts
	}
	names := []string{ip}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		names = append(names, strings.ToLower(h))
	}
	if p := net.ParseIP(ip); p != nil && (p.Equal(net.IPv4(127, 0, 0, 1)) || p.Equal(net.IPv6loopback)) {
		names = append(names, "localhost")
	}
	for _, n := range names {
		hosts[net.JoinHostPort(n, port)] = true
		if port == "80" {
			if strings.Contains(n, ":") {
				n = "[" + n + "]"
			}
			hosts[n] = true
		}
	}
	return hosts
}

// refuse answers a refused request with status and a text saying what to
// do, and counts it by reason (a fixed set: host, no-token, token,
// content-type, rate-limit). Nothing of the request's headers is logged:
// a wrong token may be a right one mistyped.
func (g *adminGuard) refuse(w http.ResponseWriter, r *http.Request, status int, reason, text string) {
	g.refused.WithLabelValues(reason).Inc()
	g.logRefusals.Do(func() {
		g.log.Warn("admin: refused a request (further refusals within a minute are only counted in push2_admin_refused_total)",
			"reason", reason, "status", status, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	})
	http.Error(w, text, status)
}

// checkHost wraps the whole interface: a request whose Host header does not
// name the listener is refused with 421 Misdirected Request.
func (g *adminGuard) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hosts[strings.ToLower(r.Host)] {
			g.refuse(w, r, http.StatusMisdirectedRequest, "host",
				fmt.Sprintf("Host %q does not name push2d's admin interface; use the address of admin.listen (DNS rebinding protection)", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// needToken guards registration data and state changes: without a
// configured token they are refused (403), without the right one too (401).
func (g *adminGuard) needToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.token.configured() {
			g.refuse(w, r, http.StatusForbidden, "no-token",
				r.URL.Path+" needs a bearer token and push2d has none: set admin.token_file in push2d.toml to a file of mode 0600 holding a random token (docs/push2d.md \"Admin interface\"), restart push2d, and send Authorization: Bearer <token>")
			return
		}
		scheme, presented, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || !g.token.matches(strings.TrimSpace(presented)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="push2d admin"`)
			g.refuse(w, r, http.StatusUnauthorized, "token",
				r.URL.Path+" needs the admin token: send Authorization: Bearer <the content of admin.token_file>")
			return
		}
		next(w, r)
	}
}

// maxAdminBody bounds a state-changing request's body.
const maxAdminBody = 64 << 10

// jsonBody guards state changes: only application/json bodies are read.
// Browsers send other types cross-site without asking (a CORS "simple
// request"), but application/json only after a preflight that push2d does
// not answer, so a web page cannot make the operator's browser post here.
func (g *adminGuard) jsonBody(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			g.refuse(w, r, http.StatusUnsupportedMediaType, "content-type",
				r.Method+" "+r.URL.Path+" needs Content-Type: application/json (form and text/plain bodies are refused: a web page could send them)")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		next(w, r)
	}
}

// limitPing answers 429 with Retry-After when account has no ping left.
func (g *adminGuard) limitPing(w http.ResponseWriter, r *http.Request, account string) bool {
	wait := g.pings.reserve(account, time.Now())
	if wait <= 0 {
		return true
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	g.refuse(w, r, http.StatusTooManyRequests, "rate-limit",
		fmt.Sprintf("ping: %s was pinged too often; try again in %d s (admin.ping_burst, admin.ping_interval)", account, secs))
	return false
}

// pingLimiter is a token bucket per account (golang.org/x/time/rate):
// burst pings at once, then one every interval.
//
// A bucket that has refilled to burst behaves exactly like a new one, so
// such buckets are dropped when the map grows: memory follows the accounts
// pinged within the last burst×interval, not every account ever pinged.
type pingLimiter struct {
	every time.Duration
	burst int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	sweepSize int // sweep when the map reaches this size
}

const minSweepSize = 1024

func newPingLimiter(every time.Duration, burst int) *pingLimiter {
	return &pingLimiter{every: every, burst: burst, buckets: map[string]*rate.Limiter{}, sweepSize: minSweepSize}
}

// reserve takes one ping from account's bucket and returns 0, or, with the
// bucket empty, takes nothing and returns how long until it holds one.
func (l *pingLimiter) reserve(account string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[account]
	if b == nil {
		if len(l.buckets) >= l.sweepSize {
			l.sweep(now)
		}
		b = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.buckets[account] = b
	}
	res := b.ReserveN(now, 1)
	if !res.OK() {
		return l.every
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// sweep drops the full buckets; the next sweep waits until the map has
// doubled, so sweeping costs O(1) per new account, amortized.
func (l *pingLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	l.sweepSize = max(minSweepSize, 2*len(l.buckets))
}
