package e2e

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/relay/relaytest"
	"github.com/push2/push2/internal/stack"
)

// relayJID is push2d's own Web Push relay in these tests ([relay] jid).
const relayJID = "webpush.localhost"

// startRelayStack starts the stack with push2d's relay posting to rcv
// (its TLS certificate trusted through relay.ca_file, 127.0.0.1
// allow-listed).
func startRelayStack[P prosodytest.Version | server](t *testing.T, p P, rcv *relaytest.Receiver) *stack.Stack {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "receiver-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rcv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return startStack(t, p, stack.Options{Push2dConfig: fmt.Sprintf(`
[delivery]
retry_base_delay = "200ms"
retry_max_delay = "1s"
error_window = "30s"
max_attempts = 8
max_errors = 20

[relay]
jid = %q
allow_networks = ["127.0.0.1/32"]
ca_file = %q
timeout = "2s"
`, relayJID, ca)})
}

// encryptedEnable is a registration with the encrypted send profile whose
// service is the relay and whose client is a Web Push endpoint.
func encryptedEnable(t *testing.T, sub *relaytest.Subscription, endpoint, aud string) string {
	t.Helper()
	raw := func(s string) string {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	return `<enable xmlns="urn:xmpp:push2:0"><service>` + relayJID + `</service><client>` + endpoint + `</client>` +
		`<match profile="urn:xmpp:push2:match:important"><send xmlns="urn:xmpp:push2:send:sce+rfc8291+rfc8292:0">` +
		`<ua-public>` + raw(sub.ID.UAPublic) + `</ua-public><auth-secret>` + raw(sub.ID.AuthSecret) + `</auth-secret>` +
		`<jwt-alg>ES256</jwt-alg><jwt-key>` + raw(sub.ID.VAPIDPrivate) + `</jwt-key><jwt-claim name="aud">` + aud + `</jwt-claim>` +
		`</send></match></enable>`
}

func waitPush(t *testing.T, rcv *relaytest.Receiver, within time.Duration) relaytest.Push {
	t.Helper()
	select {
	case p := <-rcv.C():
		if p.Err != nil {
			t.Fatalf("the receiver refused the relayed request: %v", p.Err)
		}
		return p
	case <-time.After(within):
		t.Fatalf("no push at the Web Push receiver within %s", within)
	}
	return relaytest.Push{}
}

func noPush(t *testing.T, rcv *relaytest.Receiver, within time.Duration) {
	t.Helper()
	select {
	case p := <-rcv.C():
		t.Fatalf("unexpected push to %s", p.Path)
	case <-time.After(within):
	}
}

// TestWebPushRelay: an encrypted push goes from a real client's message
// through Prosody, the bridge, push2d and its relay to a Web Push receiver
// that checks every header, verifies the VAPID token and decrypts the body;
// then the status rows of docs/relay.md's table, with push2d's resulting
// behaviour: 201 delivered (confirmed at once), 500 retried then delivered,
// 429 with Retry-After retried no earlier than asked, a push service that
// does not answer retried after the relay's timeout, 404/400/401/403/413
// and a redirect given up at once (no retry, redirect not followed), 410
// disables the registration on the first error.
func TestWebPushRelay(t *testing.T) { eachServer(t, testWebPushRelay) }

func testWebPushRelay(t *testing.T, p server) {
	sub, err := relaytest.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	rcv := relaytest.New(sub.UA, sub.Keys.AuthSecret)
	defer rcv.Close()
	s := startRelayStack(t, p, rcv)
	domain := s.Server.Domain()
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	const path = "/push/juliet-subscription"
	if resp := iq(t, juliet, "set", encryptedEnable(t, sub, rcv.Endpoint(path), rcv.URL)); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()
	waitFor(t, 10*time.Second, func() bool {
		out, _ := s.Admin("/registrations?account=juliet@" + domain)
		return strings.Contains(out, relayJID)
	})
	time.Sleep(300 * time.Millisecond) // the session's end reaches the bridge

	// 201: decrypted at the receiver; delivered without the error window.
	send(t, romeo, chat("juliet@"+domain, "r1", "Wherefore art thou Romeo?"))
	got := waitPush(t, rcv, 15*time.Second)
	if got.Path != path || !strings.Contains(string(got.Plaintext), "Wherefore art thou Romeo?") || !strings.Contains(string(got.Plaintext), `<envelope xmlns="urn:xmpp:sce:1">`) {
		t.Errorf("push to %s, plaintext %q", got.Path, got.Plaintext)
	}
	if got.Header.Get("Urgency") != "normal" || got.Header.Get("TTL") != "86400" || got.Claims["sub"] != "xmpp:"+domain {
		t.Errorf("headers %v, claims %v", got.Header, got.Claims)
	}
	metric := func(want string) func() bool {
		return func() bool { m, _ := s.Admin("/metrics"); return strings.Contains(m, want) }
	}
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="delivered"} 1`))
	waitFor(t, 5*time.Second, metric(`push2_relay_requests_total{class="2xx"} 1`))

	// 500: wait/internal-server-error, retried, then delivered.
	rcv.Answer(path, relaytest.Answer{Status: 500})
	send(t, romeo, chat("juliet@"+domain, "r2", "retry me"))
	first := waitPush(t, rcv, 15*time.Second)
	rcv.Answer(path, relaytest.Answer{Status: 201})
	second := waitPush(t, rcv, 10*time.Second)
	if string(first.Plaintext) != string(second.Plaintext) {
		t.Error("the retry carries another notification")
	}
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="delivered"} 2`))
	waitFor(t, 5*time.Second, metric(`push2_outbox_total{event="retry"} 1`))

	// 429 with Retry-After: the retries before it passes stay in the relay.
	rcv.Answer(path, relaytest.Answer{Status: 429, RetryAfter: "2"})
	send(t, romeo, chat("juliet@"+domain, "r3", "not so fast"))
	limited := waitPush(t, rcv, 15*time.Second)
	at := time.Now()
	rcv.Answer(path, relaytest.Answer{Status: 201})
	waitPush(t, rcv, 15*time.Second)
	if waited := time.Since(at); waited < 1500*time.Millisecond {
		t.Errorf("retried %s after a Retry-After of 2s", waited)
	}
	_ = limited
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="delivered"} 3`))

	// A push service that does not answer: wait/remote-server-timeout after
	// the relay's timeout, retried, then delivered.
	rcv.Answer(path, relaytest.Answer{Status: 201, Delay: time.Minute})
	send(t, romeo, chat("juliet@"+domain, "r3b", "anyone there?"))
	waitPush(t, rcv, 15*time.Second)
	rcv.Answer(path, relaytest.Answer{Status: 201})
	waitPush(t, rcv, 15*time.Second)
	waitFor(t, 10*time.Second, metric(`push2_relay_requests_total{class="timeout"} 1`))
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="delivered"} 4`))

	// The permanent rows: given up at once (dropped, no retry), the
	// registration stays (max_errors is not reached).
	for i, code := range []int{404, 400, 401, 403, 413, 302} {
		rcv.Answer(path, relaytest.Answer{Status: code, Location: rcv.Endpoint("/elsewhere")})
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("p%d", code), "refused"))
		if got := waitPush(t, rcv, 15*time.Second); got.Path != path {
			t.Fatalf("%d: push to %s", code, got.Path)
		}
		waitFor(t, 10*time.Second, metric(fmt.Sprintf(`push2_outbox_total{event="dropped"} %d`, i+1)))
	}
	noPush(t, rcv, 1500*time.Millisecond) // none retried, the redirect not followed
	if out, _ := s.Admin("/registrations?account=juliet@" + domain); !strings.Contains(out, relayJID) {
		t.Fatalf("the registration is gone after permanent errors below max_errors: %s", out)
	}
	m, _ := s.Admin("/metrics")
	for _, want := range []string{`push2_relay_requests_total{class="4xx"} 6`, `push2_relay_requests_total{class="3xx"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "push2_"))
		}
	}

	// 410: cancel/gone, the registration is disabled at once.
	rcv.Answer(path, relaytest.Answer{Status: 410})
	send(t, romeo, chat("juliet@"+domain, "r4", "are you there?"))
	waitPush(t, rcv, 15*time.Second)
	waitFor(t, 10*time.Second, func() bool {
		out, _ := s.Admin("/disabled?account=juliet@" + domain)
		return strings.Contains(out, `"gone"`) && strings.Contains(out, "registration is gone")
	})
	send(t, romeo, chat("juliet@"+domain, "r5", "after gone"))
	noPush(t, rcv, 2*time.Second)
}
