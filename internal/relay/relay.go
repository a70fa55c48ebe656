package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles/webpush"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxEndpoint = 2048
	DefaultTimeout     = 10 * time.Second
	DefaultPerHost     = 16
	DefaultTotal       = 256
	// DefaultMaxRetryAfter caps how long a Retry-After holds an endpoint.
	DefaultMaxRetryAfter = time.Hour
)

// MaxBody is the largest request body: RFC 8291 §4 limits a push message
// to 4096 bytes of aes128gcm body.
const MaxBody = webpush.MaxBodySize

// TTLPolicy is the RFC 8030 §5.2 TTL of a push message, by the
// notification's priority (push2.md "Push notifications", <priority/>).
// Push 2.0 carries no time to live; the relay's operator decides. A zero
// field takes its default: low and normal a day (the message is still worth
// showing tomorrow; the client fetches it from its archive anyway), high
// (calls, <voip/>) a minute, since a late call notification only rings for
// a call that is over.
type TTLPolicy struct {
	Low, Normal, High time.Duration
}

func (p *TTLPolicy) fill() {
	if p.Low <= 0 {
		p.Low = 24 * time.Hour
	}
	if p.Normal <= 0 {
		p.Normal = 24 * time.Hour
	}
	if p.High <= 0 {
		p.High = time.Minute
	}
}

// Config configures a Relay. The zero value is a safe relay for public
// https endpoints.
type Config struct {
	// AllowHTTP accepts http:// endpoints. Off by default: a push message
	// carries a bearer token (the VAPID JWT) and the endpoint is a
	// capability URL, neither of which should cross a network in clear.
	AllowHTTP bool
	// AllowNets are address ranges the relay may connect to although they
	// are loopback, private, link-local, multicast or unspecified (a local
	// UnifiedPush distributor, tests on 127.0.0.1). Public addresses need
	// no listing.
	AllowNets []netip.Prefix
	// MaxEndpoint is the longest <client/> URL accepted, in bytes.
	MaxEndpoint int
	// Timeout bounds one notification: waiting for a connection slot, the
	// connection, the request and reading the answer.
	Timeout time.Duration
	// PerHost bounds the requests in flight to one endpoint host; Total
	// bounds them all. A host that stops answering holds at most PerHost
	// slots, so the others keep being served.
	PerHost, Total int
	// TTL is the TTL header by priority.
	TTL TTLPolicy
	// MaxRetryAfter caps how long a push service's Retry-After (on 429
	// and 503) makes the relay answer wait at once for that endpoint
	// without asking the push service again.
	MaxRetryAfter time.Duration
	// TLS is the client's TLS configuration (nil: the system's roots).
	// Tests set RootCAs to their server's certificate.
	TLS *tls.Config
	// Logger gets one debug line per request (endpoint origin, status,
	// duration) and warnings for refusals; never a token, payload or
	// endpoint path. Default slog.Default().
	Logger *slog.Logger
	// Observe, if set, is called once per notification with its class
	// ("2xx", "3xx", "4xx", "5xx", "timeout", "connection", "refused":
	// the relay did not send it) and how long it took. It must not block.
	Observe func(class string, d time.Duration)
	// Clock is the time for the JWT checks and Retry-After (default
	// time.Now).
	Clock func() time.Time
}

// Relay posts notifications to Web Push endpoints. It is safe for
// concurrent use; its HTTP connections are reused (HTTP/2 where the push
// service offers it).
type Relay struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	total  chan struct{}

	mu      sync.Mutex
	hosts   map[string]*hostSlots // by origin, while requests use them
	blocked map[string]time.Time  // endpoint → until, from Retry-After
	tokens  verifiedTokens
}

type hostSlots struct {
	sem   chan struct{}
	users int
}

// New returns a relay for cfg.
func New(cfg Config) *Relay {
	if cfg.MaxEndpoint <= 0 {
		cfg.MaxEndpoint = DefaultMaxEndpoint
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PerHost <= 0 {
		cfg.PerHost = DefaultPerHost
	}
	if cfg.Total <= 0 {
		cfg.Total = DefaultTotal
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	cfg.TTL.fill()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	guard := addressGuard{allow: cfg.AllowNets}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second, Control: guard.control}
	tr := &http.Transport{
		Proxy:                 nil, // never HTTP(S)_PROXY: it would bypass the address guard
		DialContext:           dialer.DialContext,
		TLSClientConfig:       cfg.TLS,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.Total,
		MaxIdleConnsPerHost:   cfg.PerHost,
		MaxConnsPerHost:       cfg.PerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
	}
	return &Relay{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			// RFC 8030 push services do not redirect; a redirect could
			// point the relay anywhere, so it is an answer, not a hop.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:     cfg.Logger,
		total:   make(chan struct{}, cfg.Total),
		hosts:   map[string]*hostSlots{},
		blocked: map[string]time.Time{},
	}
}

// Close closes idle connections.
func (r *Relay) Close() { r.client.CloseIdleConnections() }

// Result is the outcome of one notification.
type Result struct {
	// Status is the push service's HTTP status, 0 if none came.
	Status int
	// Err is nil when the push service accepted the message (2xx), else
	// the stanza error to answer the notification with.
	Err *stanza.Error
	// RetryAfter is what the push service's Retry-After asked for (or
	// what is left of it), zero if nothing.
	RetryAfter time.Duration
}

// Push posts one notification: n is the <notification
// xmlns='urn:xmpp:push2:0'/> element (or the <message/> that carries it).
func (r *Relay) Push(ctx context.Context, n *stanza.Element) Result {
	begin := time.Now()
	req, origin, bad := r.request(n)
	if bad != nil {
		return r.done("refused", begin, origin, Result{Err: bad})
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if until, ok := r.blockedUntil(req.URL.String()); ok {
		left := until.Sub(r.cfg.Clock()).Round(time.Second)
		return r.done("refused", begin, origin, Result{RetryAfter: left,
			Err: stanza.NewError(stanza.Wait, stanza.CondResourceConstraint, "the push service asked to wait %s more before the next message to this endpoint (Retry-After)", left)})
	}
	release, err := r.acquire(ctx, origin)
	if err != nil {
		return r.done("timeout", begin, origin, Result{Err: stanza.NewError(stanza.Wait, stanza.CondRemoteServerTimeout, "too many requests to %s are in flight; try again later", origin)})
	}
	defer release()
	resp, err := r.client.Do(req.WithContext(ctx))
	if err != nil {
		class, se := transportError(err, origin)
		if class == "refused" {
			r.log.Warn("relay: endpoint refused", "origin", origin, "why", se.Text)
		}
		return r.done(class, begin, origin, Result{Err: se})
	}
	// Drain (bounded) so the connection is reused; the body is never
	// logged.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	res := Result{Status: resp.StatusCode, Err: statusError(resp.StatusCode, origin)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), r.cfg.Clock()); ok {
			res.RetryAfter = min(d, r.cfg.MaxRetryAfter)
			r.block(req.URL.String(), r.cfg.Clock().Add(res.RetryAfter))
			res.Err.Text += fmt.Sprintf(" (Retry-After: %s)", res.RetryAfter.Round(time.Second))
		}
	}
	return r.done(strconv.Itoa(resp.StatusCode/100)+"xx", begin, origin, res)
}

func (r *Relay) done(class string, begin time.Time, origin string, res Result) Result {
	d := time.Since(begin)
	if r.cfg.Observe != nil {
		r.cfg.Observe(class, d)
	}
	if res.Err != nil {
		r.log.Debug("relay: not delivered", "origin", origin, "status", res.Status, "condition", res.Err.Condition, "took", d)
	} else {
		r.log.Debug("relay: delivered", "origin", origin, "status", res.Status, "took", d)
	}
	return res
}

// acquire takes a slot for origin, then one of the total: the per-host slot
// first, so that requests queued for a host that does not answer wait
// without holding slots the other hosts need.
func (r *Relay) acquire(ctx context.Context, origin string) (release func(), err error) {
	r.mu.Lock()
	h := r.hosts[origin]
	if h == nil {
		h = &hostSlots{sem: make(chan struct{}, r.cfg.PerHost)}
		r.hosts[origin] = h
	}
	h.users++
	r.mu.Unlock()
	leave := func() {
		r.mu.Lock()
		if h.users--; h.users == 0 {
			delete(r.hosts, origin)
		}
		r.mu.Unlock()
	}
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
	select {
	case r.total <- struct{}{}:
	case <-ctx.Done():
		<-h.sem
		leave()
		return nil, ctx.Err()
	}
	return func() { <-r.total; <-h.sem; leave() }, nil
}

// maxBlocked bounds the Retry-After memory; when full, expired entries go
// first, then everything (the worst case is one more request each).
const maxBlocked = 10000

func (r *Relay) block(endpoint string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.blocked) >= maxBlocked {
		now := r.cfg.Clock()
		for k, t := range r.blocked {
			if !t.After(now) {
				delete(r.blocked, k)
			}
		}
		if len(r.blocked) >= maxBlocked {
			clear(r.blocked)
		}
	}
	r.blocked[endpoint] = until
}

func (r *Relay) blockedUntil(endpoint string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.blocked[endpoint]
	if !ok {
		return time.Time{}, false
	}
	if !until.After(r.cfg.Clock()) {
		delete(r.blocked, endpoint)
		return time.Time{}, false
	}
	return until, true
}

// request builds the RFC 8030 request for notification n, or the stanza
// error that says why there is none. origin is the endpoint's origin, the
// only part of it that may be logged.
func (r *Relay) request(n *stanza.Element) (req *http.Request, origin string, err *stanza.Error) {
	if !n.Is(stanza.NSPush2, "notification") {
		n = n.Child(stanza.NSPush2, "notification")
	}
	if n == nil {
		return nil, "", stanza.BadRequest("no <notification xmlns='%s'/>", stanza.NSPush2)
	}
	u, origin, err := r.endpoint(strings.TrimSpace(n.ChildText(stanza.NSPush2, "client")))
	if err != nil {
		return nil, "", err
	}
	var body []byte
	if enc := n.Child(stanza.NSRFC8291, "encrypted"); enc != nil {
		p := enc.Child(stanza.NSRFC8291, "payload")
		if p == nil {
			return nil, origin, stanza.BadRequest("<encrypted/> has no <payload/>")
		}
		// Decoded length is at most 3/4 of the text: refuse a huge text
		// before decoding it.
		if len(p.Text) > (MaxBody+3)/3*4+64 {
			return nil, origin, stanza.NewError(stanza.Modify, stanza.CondNotAcceptable, "the payload is larger than the %d bytes a Web Push message may carry (RFC 8291 §4)", MaxBody)
		}
		b, decErr := webpush.DecodeBase64(p.Text)
		if decErr != nil {
			return nil, origin, stanza.BadRequest("the <payload/> is not valid base64")
		}
		if len(b) > MaxBody {
			return nil, origin, stanza.NewError(stanza.Modify, stanza.CondNotAcceptable, "the payload is %d bytes, more than the %d a Web Push message may carry (RFC 8291 §4)", len(b), MaxBody)
		}
		if len(b) == 0 {
			return nil, origin, stanza.BadRequest("the <payload/> is empty")
		}
		body = b
	}
	var auth string
	if j := n.Child(stanza.NSPush2, "jwt"); j != nil {
		if auth, err = r.vapid(strings.TrimSpace(j.Text), j.AttrValue("key"), origin); err != nil {
			return nil, origin, err
		}
	}
	prio := strings.TrimSpace(n.ChildText(stanza.NSPush2, "priority"))
	var ttl time.Duration
	urgency := "normal"
	switch {
	case n.Child(stanza.NSPush2, "voip") != nil || prio == "high":
		urgency, ttl = "high", r.cfg.TTL.High
	case prio == "low":
		urgency, ttl = "low", r.cfg.TTL.Low
	case prio == "normal" || prio == "":
		ttl = r.cfg.TTL.Normal
	default:
		return nil, origin, stanza.BadRequest("<priority/> must be low, normal or high")
	}

	req = &http.Request{Method: http.MethodPost, URL: u, Header: http.Header{}, Host: u.Host}
	req.Header.Set("TTL", strconv.FormatInt(int64(ttl/time.Second), 10))
	req.Header.Set("Urgency", urgency)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Encoding", "aes128gcm")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.ContentLength = int64(len(body))
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return req, origin, nil
}

// endpoint checks the push resource URL of <client/>.
func (r *Relay) endpoint(s string) (*url.URL, string, *stanza.Error) {
	if s == "" {
		return nil, "", stanza.BadRequest("the notification has no <client/>: the Web Push endpoint to post to")
	}
	if len(s) > r.cfg.MaxEndpoint {
		return nil, "", stanza.BadRequest("the endpoint is %d bytes long, more than this relay accepts (%d)", len(s), r.cfg.MaxEndpoint)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, "", stanza.BadRequest("<client/> is not an absolute http(s) URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !r.cfg.AllowHTTP {
			return nil, "", stanza.NewError(stanza.Cancel, stanza.CondNotAllowed, "this relay posts to https endpoints only")
		}
	default:
		return nil, "", stanza.BadRequest("<client/> is not an absolute http(s) URL")
	}
	if u.User != nil {
		return nil, "", stanza.BadRequest("the endpoint URL must not carry user information")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, Origin(u), nil
}

// Origin is the RFC 6454 origin of an http(s) URL as RFC 8292 §2 compares
// it with "aud": scheme://host, with the port only when it is not the
// scheme's default, lower case.
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(scheme == "https" && p == "443") && !(scheme == "http" && p == "80") {
		host += ":" + p
	}
	return scheme + "://" + host
}

// vapid checks the notification's token against the endpoint and returns
// the RFC 8292 §3 Authorization header value.
func (r *Relay) vapid(token, key, origin string) (string, *stanza.Error) {
	if token == "" {
		return "", stanza.BadRequest("the <jwt/> is empty")
	}
	raw, err := webpush.DecodeBase64(key)
	if err != nil || len(raw) == 0 {
		return "", stanza.BadRequest("the <jwt/> has no valid 'key' attribute (base64 of the VAPID public key)")
	}
	now := r.cfg.Clock()
	aud, ok := r.tokens.get(token, raw, now)
	if !ok {
		claims, err := webpush.VerifyAt(token, raw, now)
		if err != nil {
			// Which check failed matters to the sender (an expired token
			// must be signed again); the token never appears.
			return "", stanza.NewError(stanza.Modify, stanza.CondNotAcceptable, "the VAPID token is not acceptable: %s", strings.TrimPrefix(err.Error(), "webpush: "))
		}
		aud, _ = claims["aud"].(string)
		exp, _ := claims["exp"].(int64)
		r.tokens.put(token, raw, aud, time.Unix(exp, 0))
	}
	a, perr := url.Parse(aud)
	if aud == "" || perr != nil || a.Host == "" || Origin(a) != origin || (a.Path != "" && a.Path != "/") {
		return "", stanza.NewError(stanza.Modify, stanza.CondNotAcceptable, "the VAPID token's \"aud\" is not the endpoint's origin %s (RFC 8292 §2)", origin)
	}
	return "vapid t=" + token + ", k=" + webpush.EncodeBase64URL(raw), nil
}

// statusError maps a push service's HTTP status to the stanza error of
// docs/relay.md's table; nil for 2xx.
func statusError(code int, origin string) *stanza.Error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusNotFound:
		return stanza.NewError(stanza.Cancel, stanza.CondItemNotFound, "the push service does not know this subscription (404)")
	case code == http.StatusGone:
		return stanza.NewError(stanza.Cancel, stanza.CondGone, "the subscription has expired or was removed (410)")
	case code == http.StatusBadRequest:
		return stanza.BadRequest("the push service refused the request as malformed (400)")
	case code == http.StatusUnauthorized:
		return stanza.NewError(stanza.Auth, stanza.CondNotAuthorized, "the push service wants a valid VAPID token (401)")
	case code == http.StatusForbidden:
		return stanza.NewError(stanza.Auth, stanza.CondForbidden, "the push service refused the VAPID token or key (403)")
	case code == http.StatusRequestEntityTooLarge:
		return stanza.NewError(stanza.Modify, stanza.CondNotAcceptable, "the push service refused the payload as too large (413)")
	case code == http.StatusTooManyRequests:
		return stanza.NewError(stanza.Wait, stanza.CondResourceConstraint, "the push service is rate limiting (429)")
	case code >= 300 && code < 400:
		return stanza.NewError(stanza.Cancel, stanza.CondRedirect, "the push service answered with a redirect (%d), which the relay does not follow", code)
	case code >= 500:
		return stanza.NewError(stanza.Wait, stanza.CondInternalServerError, "the push service failed (%d)", code)
	default:
		return stanza.BadRequest("the push service refused the request (%d)", code)
	}
}

// transportError classifies a failed request: the address guard's refusal,
// a timeout, or another connection failure.
func transportError(err error, origin string) (class string, se *stanza.Error) {
	var refused *refusedAddr
	if errors.As(err, &refused) {
		return "refused", stanza.NewError(stanza.Cancel, stanza.CondNotAllowed, "the endpoint %s resolves to %s, which this relay does not connect to (loopback, private, link-local, multicast or unspecified addresses need the relay's allow-list)", origin, refused.what)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout", stanza.NewError(stanza.Wait, stanza.CondRemoteServerTimeout, "the push service at %s did not answer in time", origin)
	}
	return "connection", stanza.NewError(stanza.Wait, stanza.CondRecipientUnavailable, "the push service at %s cannot be reached: %s", origin, connReason(err))
}

// connReason names a connection failure without quoting the URL (which
// url.Error would).
func connReason(err error) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &dnsErr):
		return "the name does not resolve"
	case errors.As(err, &certErr):
		return "its TLS certificate does not verify"
	case errors.As(err, &opErr):
		return opErr.Op + " failed"
	}
	return "the connection failed"
}

// parseRetryAfter reads RFC 9110 §10.2.3 Retry-After: seconds or an HTTP
// date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, 1<<32)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// verifiedTokens remembers tokens whose signature verified, with their
// "aud" and "exp": push2's Signer reuses a token for hours, so a busy
// account's notifications carry the same one, and verifying its ECDSA
// signature again would be half of the relay's CPU per notification
// (BenchmarkRelayPush). The key is a hash of key and token, so a token
// presented with another key is verified anew; "exp" is checked on every
// hit. At most maxVerified entries; when full it starts over.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	aud string
	exp time.Time
}

const maxVerified = 4096

func tokenKey(token string, key []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(key)
	h.Write([]byte{0})
	h.Write([]byte(token))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (v *verifiedTokens) get(token string, key []byte, now time.Time) (string, bool) {
	k := tokenKey(token, key)
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.m[k]
	if !ok || !now.Before(t.exp) || t.exp.Sub(now) > webpush.MaxTokenLifetime {
		return "", false
	}
	return t.aud, true
}

func (v *verifiedTokens) put(token string, key []byte, aud string, exp time.Time) {
	k := tokenKey(token, key)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerified {
		v.m = make(map[[sha256.Size]byte]verifiedToken)
	}
	v.m[k] = verifiedToken{aud, exp}
}
