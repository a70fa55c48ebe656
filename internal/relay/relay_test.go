package relay

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/relay/relaytest"
	"github.com/push2/push2/profiles/webpush"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func newTestRelay(t testing.TB, rcv *relaytest.Receiver, cfg Config) *Relay {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(rcv.Certificate())
	cfg.TLS = rcv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.TLS.RootCAs = pool
	if cfg.AllowNets == nil {
		cfg.AllowNets = loopback
	}
	r := New(cfg)
	t.Cleanup(r.Close)
	return r
}

func receiver(t testing.TB) (*relaytest.Receiver, *relaytest.Subscription) {
	t.Helper()
	sub, err := relaytest.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	rcv := relaytest.New(sub.UA, sub.Keys.AuthSecret)
	t.Cleanup(rcv.Close)
	return rcv, sub
}

// notification builds what push2's encrypted profile sends: plaintext
// encrypted to sub, a token for aud signed at now.
func notification(t testing.TB, sub *relaytest.Subscription, endpoint, aud, prio string, plain []byte, now time.Time) *stanza.Element {
	t.Helper()
	n := stanza.NewElement(stanza.NSPush2, "notification")
	n.Append(stanza.NewElement(stanza.NSPush2, "client").WithText(endpoint))
	if prio != "" {
		n.Append(stanza.NewElement(stanza.NSPush2, "priority").WithText(prio))
	}
	if plain != nil {
		body, err := webpush.Encrypt(sub.Keys, plain, 0)
		if err != nil {
			t.Fatal(err)
		}
		n.Append(stanza.NewElement(stanza.NSRFC8291, "encrypted").Append(
			stanza.NewElement(stanza.NSRFC8291, "payload").WithText(base64.StdEncoding.EncodeToString(body))))
	}
	if aud != "" {
		tok, err := webpush.NewSigner(0).Sign(sub.VAPID, []webpush.Claim{{Name: "aud", Value: aud}}, "xmpp:localhost", now)
		if err != nil {
			t.Fatal(err)
		}
		n.Append(stanza.NewElement(stanza.NSPush2, "jwt", "key", base64.StdEncoding.EncodeToString(sub.VAPID.PublicRaw())).WithText(tok))
	}
	return n
}

func TestPushHeadersAndBody(t *testing.T) {
	rcv, sub := receiver(t)
	r := newTestRelay(t, rcv, Config{TTL: TTLPolicy{Low: 3 * time.Hour, Normal: 2 * time.Hour, High: 30 * time.Second}})
	for _, c := range []struct{ prio, voip, urgency, ttl string }{
		{"low", "", "low", "10800"}, {"normal", "", "normal", "7200"}, {"high", "", "high", "30"}, {"normal", "voip", "high", "30"},
	} {
		n := notification(t, sub, rcv.Endpoint("/sub/"+c.prio+c.voip), rcv.URL, c.prio, []byte("<envelope/>"), time.Now())
		if c.voip != "" {
			n.Append(stanza.NewElement(stanza.NSPush2, "voip"))
		}
		res := r.Push(context.Background(), n)
		if res.Err != nil || res.Status != http.StatusCreated {
			t.Fatalf("%s%s: %+v %v", c.prio, c.voip, res, res.Err)
		}
		p := <-rcv.C()
		if p.Err != nil {
			t.Fatalf("receiver: %v", p.Err)
		}
		if got := p.Header.Get("Urgency"); got != c.urgency {
			t.Errorf("%s%s: Urgency %q, want %q", c.prio, c.voip, got, c.urgency)
		}
		if got := p.Header.Get("TTL"); got != c.ttl {
			t.Errorf("%s%s: TTL %q, want %q", c.prio, c.voip, got, c.ttl)
		}
		if string(p.Plaintext) != "<envelope/>" {
			t.Errorf("plaintext %q", p.Plaintext)
		}
		if p.Claims["aud"] != rcv.URL || p.Claims["sub"] != "xmpp:localhost" {
			t.Errorf("claims %v", p.Claims)
		}
		if !strings.HasPrefix(p.Header.Get("Authorization"), "vapid t=") || !strings.Contains(p.Header.Get("Authorization"), ", k="+webpush.EncodeBase64URL(sub.VAPID.PublicRaw())) {
			t.Errorf("Authorization %q", p.Header.Get("Authorization"))
		}
	}
}

func TestNotifyOnlyEmptyBody(t *testing.T) {
	rcv, sub := receiver(t)
	r := newTestRelay(t, rcv, Config{})
	res := r.Push(context.Background(), notification(t, sub, rcv.Endpoint("/up"), "", "normal", nil, time.Now()))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	p := <-rcv.C()
	if p.Err != nil || len(p.Body) != 0 || p.Header.Get("Content-Encoding") != "" || p.Header.Get("Authorization") != "" || p.Header.Get("TTL") != "86400" {
		t.Errorf("notify-only push: err %v, %d bytes, headers %v", p.Err, len(p.Body), p.Header)
	}
}

// TestStatusTable: every row of docs/relay.md's table.
func TestStatusTable(t *testing.T) {
	rcv, sub := receiver(t)
	r := newTestRelay(t, rcv, Config{})
	for _, c := range []struct {
		status   int
		typ      stanza.ErrorType
		cond     stanza.Condition
		retry    string
		wantWait time.Duration
	}{
		{200, "", "", "", 0}, {201, "", "", "", 0}, {202, "", "", "", 0},
		{404, stanza.Cancel, stanza.CondItemNotFound, "", 0},
		{410, stanza.Cancel, stanza.CondGone, "", 0},
		{400, stanza.Modify, stanza.CondBadRequest, "", 0},
		{401, stanza.Auth, stanza.CondNotAuthorized, "", 0},
		{403, stanza.Auth, stanza.CondForbidden, "", 0},
		{413, stanza.Modify, stanza.CondNotAcceptable, "", 0},
		{429, stanza.Wait, stanza.CondResourceConstraint, "120", 120 * time.Second},
		{500, stanza.Wait, stanza.CondInternalServerError, "", 0},
		{503, stanza.Wait, stanza.CondInternalServerError, "7", 7 * time.Second},
		{302, stanza.Cancel, stanza.CondRedirect, "", 0},
		{405, stanza.Modify, stanza.CondBadRequest, "", 0},
	} {
		path := fmt.Sprintf("/status/%d", c.status)
		rcv.Answer(path, relaytest.Answer{Status: c.status, RetryAfter: c.retry, Location: rcv.Endpoint("/elsewhere")})
		res := r.Push(context.Background(), notification(t, sub, rcv.Endpoint(path), rcv.URL, "normal", []byte("x"), time.Now()))
		if res.Status != c.status {
			t.Errorf("%d: status %d", c.status, res.Status)
		}
		switch {
		case c.cond == "" && res.Err != nil:
			t.Errorf("%d: %v, want delivered", c.status, res.Err)
		case c.cond != "" && (res.Err == nil || res.Err.Type != c.typ || res.Err.Condition != c.cond):
			t.Errorf("%d: %v, want %s/%s", c.status, res.Err, c.typ, c.cond)
		}
		if res.RetryAfter != c.wantWait {
			t.Errorf("%d: RetryAfter %s, want %s", c.status, res.RetryAfter, c.wantWait)
		}
		if c.wantWait > 0 {
			// Honoured: the next message to the endpoint waits without
			// reaching the push service.
			before := len(rcv.Pushes())
			again := r.Push(context.Background(), notification(t, sub, rcv.Endpoint(path), rcv.URL, "normal", []byte("x"), time.Now()))
			if again.Err == nil || again.Err.Type != stanza.Wait || again.Err.Condition != stanza.CondResourceConstraint || again.RetryAfter <= 0 {
				t.Errorf("%d: during Retry-After: %+v", c.status, again)
			}
			if len(rcv.Pushes()) != before {
				t.Errorf("%d: the relay asked the push service again during its Retry-After", c.status)
			}
		}
	}
	for _, p := range rcv.Pushes() {
		if p.Path == "/elsewhere" {
			t.Error("the redirect was followed")
		}
	}
}

func TestRefusals(t *testing.T) {
	rcv, sub := receiver(t)
	r := newTestRelay(t, rcv, Config{})
	now := time.Now()
	big := make([]byte, 4100)
	bigN := notification(t, sub, rcv.Endpoint("/big"), "", "normal", []byte("x"), now)
	bigN.Child(stanza.NSRFC8291, "encrypted").Child(stanza.NSRFC8291, "payload").Text = base64.StdEncoding.EncodeToString(big)
	expired := notification(t, sub, rcv.Endpoint("/exp"), rcv.URL, "normal", []byte("x"), now.Add(-13*time.Hour))
	for name, c := range map[string]struct {
		n    *stanza.Element
		cond stanza.Condition
		text string
	}{
		"no client":     {stanza.NewElement(stanza.NSPush2, "notification"), stanza.CondBadRequest, "no <client/>"},
		"not a URL":     {notification(t, sub, "push.example.com/x", "", "", nil, now), stanza.CondBadRequest, "absolute"},
		"http":          {notification(t, sub, strings.Replace(rcv.Endpoint("/h"), "https:", "http:", 1), "", "", nil, now), stanza.CondNotAllowed, "https"},
		"too long":      {notification(t, sub, rcv.Endpoint("/"+strings.Repeat("a", 3000)), "", "", nil, now), stanza.CondBadRequest, "long"},
		"too big":       {bigN, stanza.CondNotAcceptable, "4096"},
		"wrong aud":     {notification(t, sub, rcv.Endpoint("/aud"), "https://push.example.com", "", []byte("x"), now), stanza.CondNotAcceptable, "aud"},
		"expired token": {expired, stanza.CondNotAcceptable, "not valid now"},
		"bad priority":  {notification(t, sub, rcv.Endpoint("/p"), "", "urgent", nil, now), stanza.CondBadRequest, "priority"},
	} {
		res := r.Push(context.Background(), c.n)
		if res.Err == nil || res.Err.Condition != c.cond || !strings.Contains(res.Err.Text, c.text) {
			t.Errorf("%s: %v, want %s containing %q", name, res.Err, c.cond, c.text)
		}
		if res.Err != nil && strings.Contains(res.Err.Text, "eyJ") {
			t.Errorf("%s: the error text quotes the token: %s", name, res.Err.Text)
		}
	}
	if n := len(rcv.Pushes()); n != 0 {
		t.Errorf("%d refused notifications reached the push service", n)
	}
}

// TestPrivateAddressesRefused: without the allow-list the relay does not
// connect to loopback, whatever the URL spells (a name resolving there, or
// the literal).
func TestPrivateAddressesRefused(t *testing.T) {
	rcv, sub := receiver(t)
	r := newTestRelay(t, rcv, Config{AllowNets: []netip.Prefix{}})
	port := rcv.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':'):]
	for _, ep := range []string{rcv.Endpoint("/a"), "https://localhost" + port + "/b", "https://[::1]" + port + "/c"} {
		res := r.Push(context.Background(), notification(t, sub, ep, "", "", nil, time.Now()))
		if res.Err == nil || res.Err.Condition != stanza.CondNotAllowed || !strings.Contains(res.Err.Text, "loopback") {
			t.Errorf("%s: %v, want not-allowed (loopback)", ep, res.Err)
		}
		if strings.Contains(res.Err.Text, "/a") || strings.Contains(res.Err.Text, "/b") {
			t.Errorf("the error quotes the endpoint path: %s", res.Err.Text)
		}
	}
	if n := len(rcv.Pushes()); n != 0 {
		t.Errorf("%d pushes reached a loopback receiver", n)
	}
}

func TestAddressGuard(t *testing.T) {
	g := addressGuard{allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	for a, ok := range map[string]bool{
		"93.184.216.34": true, "2606:4700::1111": true, "10.1.2.3": true,
		"127.0.0.1": false, "::1": false, "10.2.0.1": false, "192.168.1.1": false, "172.16.0.1": false,
		"169.254.169.254": false, "fe80::1": false, "224.0.0.1": false, "ff02::1": false, "0.0.0.0": false,
		"::": false, "100.64.0.1": false, "fc00::1": false, "::ffff:127.0.0.1": false, "255.255.255.255": false,
	} {
		if err := g.check(netip.MustParseAddr(a)); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed=%v", a, err, ok)
		}
	}
}

// TestHungEndpointDoesNotHoldOthers: an endpoint that never answers times
// out, and while it hangs (taking every slot of its host) pushes to
// another host go through at once.
func TestHungEndpointDoesNotHoldOthers(t *testing.T) {
	hung, sub := receiver(t)
	hung.Answer("/hung", relaytest.Answer{Status: 201, Delay: time.Hour})
	fast := relaytest.New(sub.UA, sub.Keys.AuthSecret)
	defer fast.Close()
	pool := x509.NewCertPool()
	pool.AddCert(hung.Certificate())
	pool.AddCert(fast.Certificate())
	tlsc := hung.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsc.RootCAs = pool
	r := New(Config{TLS: tlsc, AllowNets: loopback, PerHost: 2, Total: 4, Timeout: 2 * time.Second})
	defer r.Close()
	var wg sync.WaitGroup
	hungRes := make([]Result, 6)
	for i := range hungRes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hungRes[i] = r.Push(context.Background(), notification(t, sub, hung.Endpoint("/hung"), "", "", nil, time.Now()))
		}()
	}
	// Wait until the hung host holds its slots.
	for i := 0; i < 2; i++ {
		<-hung.C()
	}
	for i := 0; i < 5; i++ {
		res := r.Push(context.Background(), notification(t, sub, fast.Endpoint(fmt.Sprintf("/ok%d", i)), "", "", nil, time.Now()))
		if res.Err != nil {
			t.Fatalf("push to the other host while one hangs: %v", res.Err)
		}
	}
	wg.Wait()
	for i, res := range hungRes {
		if res.Err == nil || res.Err.Type != stanza.Wait || res.Err.Condition != stanza.CondRemoteServerTimeout {
			t.Errorf("hung push %d: %v, want wait/remote-server-timeout", i, res.Err)
		}
	}
}

func TestHandleMessageSenders(t *testing.T) {
	rcv, sub := receiver(t)
	r := newTestRelay(t, rcv, Config{})
	msg := func(from string) *stanza.Element {
		return stanza.NewElement(stanza.NSClient, "message", "from", from, "to", "webpush.localhost", "id", "n1").
			Append(notification(t, sub, rcv.Endpoint("/m"), "", "", nil, time.Now()))
	}
	if reply := r.HandleMessage(context.Background(), "webpush.localhost", Senders{"localhost"}, msg("localhost")); reply != nil {
		t.Errorf("allowed sender: %s", reply)
	}
	rcv.Answer("/m", relaytest.Answer{Status: 410})
	reply := r.HandleMessage(context.Background(), "webpush.localhost", Senders{"localhost"}, msg("localhost"))
	if reply == nil || reply.AttrValue("type") != "error" || reply.AttrValue("id") != "n1" || reply.AttrValue("to") != "localhost" ||
		reply.Child(stanza.NSClient, "error").AttrValue("type") != "cancel" || reply.Child(stanza.NSClient, "error").Child(stanza.NSStanzaError, "gone") == nil {
		t.Errorf("410 reply: %s", reply)
	}
	before := len(rcv.Pushes())
	for _, from := range []string{"evil.example", "user@localhost"} {
		reply := r.HandleMessage(context.Background(), "webpush.localhost", Senders{"localhost"}, msg(from))
		if reply == nil || reply.Child(stanza.NSClient, "error").Child(stanza.NSStanzaError, "not-allowed") == nil {
			t.Errorf("sender %s: %s", from, reply)
		}
	}
	if len(rcv.Pushes()) != before {
		t.Error("a refused sender's notification was posted")
	}
}

// TestVerifiedTokenExpires: a token remembered as verified is refused once
// its exp has passed.
func TestVerifiedTokenExpires(t *testing.T) {
	rcv, sub := receiver(t)
	now := time.Now()
	r := newTestRelay(t, rcv, Config{Clock: func() time.Time { return now }})
	n := notification(t, sub, rcv.Endpoint("/v"), rcv.URL, "normal", []byte("x"), now)
	for i := 0; i < 2; i++ {
		if res := r.Push(context.Background(), n); res.Err != nil {
			t.Fatalf("push %d: %v", i, res.Err)
		}
	}
	now = now.Add(13 * time.Hour)
	if res := r.Push(context.Background(), n); res.Err == nil || res.Err.Condition != stanza.CondNotAcceptable {
		t.Errorf("expired remembered token: %v", res.Err)
	}
}
