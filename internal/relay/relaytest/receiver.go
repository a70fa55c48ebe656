// Package relaytest is a Web Push receiver for tests and the demo: an
// httptest TLS server on 127.0.0.1 that behaves like an RFC 8030 push
// service. It checks every header of each push message request, verifies
// the RFC 8292 VAPID token with the "k" key, decrypts the RFC 8291 body
// with the user agent's private key, and answers the status the test asks
// for.
package relaytest

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/profiles/webpush"
)

// Push is one request the receiver got.
type Push struct {
	Path      string
	Header    http.Header
	Body      []byte // as posted (the aes128gcm body)
	Plaintext []byte // decrypted; nil for an empty body
	Claims    map[string]any
	// Err says which check failed; the receiver then answered 400 (or
	// 401/403 for the token) whatever the test asked.
	Err error
}

// Answer is what the receiver replies to a push to a path.
type Answer struct {
	Status     int
	RetryAfter string
	Location   string        // for 3xx
	Delay      time.Duration // before answering (a slow or hung push service)
}

// Receiver is a fake push service. Its methods are safe for concurrent use.
type Receiver struct {
	*httptest.Server
	UAPrivate  *ecdh.PrivateKey
	AuthSecret []byte

	mu      sync.Mutex
	answers map[string]Answer
	pushes  []Push
	ch      chan Push
	stop    chan struct{}
}

// New starts a TLS receiver on 127.0.0.1 that decrypts with uaPrivate and
// authSecret (either may be nil: then bodies are not decrypted).
func New(uaPrivate *ecdh.PrivateKey, authSecret []byte) *Receiver {
	r := &Receiver{UAPrivate: uaPrivate, AuthSecret: authSecret, answers: map[string]Answer{}, ch: make(chan Push, 1024), stop: make(chan struct{})}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.EnableHTTP2 = true
	r.StartTLS()
	return r
}

// Close stops the server, releasing handlers that are delaying.
func (r *Receiver) Close() {
	close(r.stop)
	r.Server.Close()
}

// Answer sets the reply for pushes to path (default 201 Created).
func (r *Receiver) Answer(path string, a Answer) {
	r.mu.Lock()
	r.answers[path] = a
	r.mu.Unlock()
}

// Pushes is every push received so far.
func (r *Receiver) Pushes() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Push(nil), r.pushes...)
}

// C delivers each push as it arrives.
func (r *Receiver) C() <-chan Push { return r.ch }

// Endpoint is the receiver's URL for path.
func (r *Receiver) Endpoint(path string) string { return r.URL + path }

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	p := Push{Path: req.URL.Path, Header: req.Header.Clone()}
	body, err := io.ReadAll(io.LimitReader(req.Body, 8192))
	p.Body = body
	status := http.StatusBadRequest
	if err == nil {
		status, p.Err = r.check(req, &p)
	} else {
		p.Err = err
	}
	r.mu.Lock()
	a, ok := r.answers[p.Path]
	r.pushes = append(r.pushes, p)
	r.mu.Unlock()
	select {
	case r.ch <- p:
	default:
	}
	if p.Err == nil && ok {
		status = a.Status
		if a.Delay > 0 {
			select {
			case <-time.After(a.Delay):
			case <-r.stop:
			case <-req.Context().Done():
			}
		}
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		if a.Location != "" {
			w.Header().Set("Location", a.Location)
		}
	} else if p.Err == nil {
		status = http.StatusCreated
		w.Header().Set("Location", r.URL+"/message/1")
	}
	w.WriteHeader(status)
}

// check applies RFC 8030 §5, RFC 8291 §4 and RFC 8292 §3 to one request.
func (r *Receiver) check(req *http.Request, p *Push) (int, error) {
	if req.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, fmt.Errorf("method %s, want POST", req.Method)
	}
	ttl := req.Header.Get("TTL")
	if n, err := strconv.Atoi(ttl); err != nil || n < 0 {
		return http.StatusBadRequest, fmt.Errorf("TTL %q is not a non-negative integer (RFC 8030 §5.2)", ttl)
	}
	switch u := req.Header.Get("Urgency"); u {
	case "very-low", "low", "normal", "high":
	default:
		return http.StatusBadRequest, fmt.Errorf("Urgency %q (RFC 8030 §5.3)", u)
	}
	if len(p.Body) > webpush.MaxBodySize {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes", len(p.Body))
	}
	if len(p.Body) > 0 {
		if ce := req.Header.Get("Content-Encoding"); ce != "aes128gcm" {
			return http.StatusBadRequest, fmt.Errorf("Content-Encoding %q, want aes128gcm (RFC 8291 §4)", ce)
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/octet-stream" {
			return http.StatusBadRequest, fmt.Errorf("Content-Type %q, want application/octet-stream", ct)
		}
		if r.UAPrivate != nil {
			pt, err := webpush.Decrypt(r.UAPrivate, r.AuthSecret, p.Body)
			if err != nil {
				return http.StatusBadRequest, fmt.Errorf("decrypt: %w", err)
			}
			p.Plaintext = pt
		}
	}
	if a := req.Header.Get("Authorization"); a != "" {
		claims, err := checkVAPID(a, r.URL)
		if err != nil {
			return http.StatusUnauthorized, err
		}
		p.Claims = claims
	}
	return http.StatusCreated, nil
}

// checkVAPID parses "vapid t=…, k=…" (RFC 8292 §3), verifies the token
// with k, and checks aud (this server's origin), exp (at most 24 h ahead,
// by webpush.Verify) and sub (mailto:, https: or xmpp:).
func checkVAPID(header, origin string) (map[string]any, error) {
	rest, ok := strings.CutPrefix(header, "vapid ")
	if !ok {
		return nil, fmt.Errorf("Authorization scheme is not vapid")
	}
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("Authorization parameter %q", part)
		}
		params[k] = v
	}
	t, k := params["t"], params["k"]
	if t == "" || k == "" {
		return nil, errors.New("Authorization lacks t or k")
	}
	if strings.ContainsAny(k, "+/=") {
		return nil, errors.New("k is not unpadded base64url (RFC 8292 §3.2)")
	}
	raw, err := webpush.DecodeBase64(k)
	if err != nil {
		return nil, err
	}
	claims, err := webpush.Verify(t, raw)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(origin)
	if claims["aud"] != u.Scheme+"://"+u.Host {
		return nil, fmt.Errorf("aud %v, want %s", claims["aud"], origin)
	}
	sub, _ := claims["sub"].(string)
	if !strings.HasPrefix(sub, "mailto:") && !strings.HasPrefix(sub, "https:") && !strings.HasPrefix(sub, "xmpp:") {
		return nil, fmt.Errorf("sub %q is not a mailto:, https: or xmpp: URI", sub)
	}
	return claims, nil
}

// Subscription is a user agent's keys and an application server's VAPID
// key, for building notifications as push2's encrypted profile would.
type Subscription struct {
	ID    webpush.Identity
	Keys  webpush.Keys
	UA    *ecdh.PrivateKey
	VAPID *webpush.VAPIDKey
}

// NewSubscription makes fresh keys.
func NewSubscription() (*Subscription, error) {
	id, err := webpush.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	s := &Subscription{ID: id}
	if s.Keys, err = id.Keys(); err != nil {
		return nil, err
	}
	if s.UA, err = id.UAPrivateKey(); err != nil {
		return nil, err
	}
	if s.VAPID, err = id.VAPIDKey(); err != nil {
		return nil, err
	}
	return s, nil
}
