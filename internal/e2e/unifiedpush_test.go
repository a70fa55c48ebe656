package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/relay/relaytest"
	"github.com/push2/push2/internal/stack"
	"github.com/push2/push2/profiles/webpush"
)

// nsUnifiedPush is mod_unified_push's namespace (the UnifiedPush over XMPP
// draft Conversations implements as a distributor).
const nsUnifiedPush = "http://gultsch.de/xmpp/drafts/unified-push"

// TestUnifiedPushServer: a real UnifiedPush server at the end of the relay.
// Prosody 13 runs mod_unified_push (2025 prosody-modules) with its HTTP
// listener on 127.0.0.1; a real XMPP client registers as the UnifiedPush
// distributor and gets an endpoint URL from it; a push2 registration has
// that URL as <client> and push2d's relay as <service>. A contact's chat
// message goes through Prosody, the bridge, push2d and the relay, which
// posts the aes128gcm body to mod_unified_push's endpoint; mod_unified_push
// hands it to the distributor in an IQ, and the test decrypts it with the
// user agent's private key. The distributor's answer decides the HTTP
// status and so push2d's outcome: a result is 201 (delivered); an error is
// 500 (mod_unified_push of the 2025 prosody-modules on Prosody 13 maps
// every error answer to 500: it reads the IQ error as an event where
// Prosody 13 gives a util.error), retried, then delivered. Prosody 13 only:
// mod_unified_push needs it.
func TestUnifiedPushServer(t *testing.T) {
	t.Run(prosodytest.Prosody13.Name(), func(t *testing.T) { testUnifiedPushServer(t, prosodytest.Prosody13) })
}

func testUnifiedPushServer(t *testing.T, p prosodytest.Version) {
	port := freeTCPPort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := startStack(t, p, stack.Options{
		ProsodyModules:      []string{"unified_push"},
		ProsodyHTTPPort:     port,
		ProsodyGlobalConfig: fmt.Sprintf("http_external_url = %q\nhttp_default_host = %q\n", origin+"/", "localhost"),
		Push2dConfig: fmt.Sprintf(`
[delivery]
retry_base_delay = "200ms"
retry_max_delay = "1s"
error_window = "30s"
max_attempts = 8
max_errors = 20

[relay]
jid = %q
allow_http = true
allow_networks = ["127.0.0.1/32"]
timeout = "5s"
`, relayJID)})
	domain := s.Server.Domain()

	// The distributor (on the phone, the app that holds the XMPP
	// connection for every UnifiedPush app) registers one application.
	distributor := login(t, s, "distributor", "phone", true)
	instance, application := random32(t), random32(t)
	regIQ := mustIQ("set", `<register xmlns="`+nsUnifiedPush+`" instance="`+instance+`" application="`+application+`"/>`)
	regIQ.SetAttr("to", domain)
	reg, err := distributor.IQ(t.Context(), regIQ)
	if err != nil {
		t.Fatal(err)
	}
	registered := reg.Child(nsUnifiedPush, "registered")
	if reg.AttrValue("type") != "result" || registered == nil {
		t.Fatalf("UnifiedPush register: %s", reg)
	}
	endpoint := registered.AttrValue("endpoint")
	if u, err := url.Parse(endpoint); err != nil || u.Scheme+"://"+u.Host != origin || !strings.HasPrefix(u.Path, "/push/") {
		t.Fatalf("mod_unified_push issued the endpoint %q, want one under %s/push/", endpoint, origin)
	}
	var failures atomic.Int32 // answers left to fail
	pushes := make(chan *stanza.Element, 16)
	fn := func(in *stanza.Element) *stanza.Element {
		if in.Child(nsUnifiedPush, "push") == nil {
			return iqError(in, "cancel", "service-unavailable")
		}
		pushes <- in
		if failures.Add(-1) >= 0 {
			return iqError(in, "wait", "internal-server-error")
		}
		return stanza.NewElement(stanza.NSClient, "iq", "type", "result", "id", in.AttrValue("id"), "to", in.AttrValue("from"))
	}
	distributor.OnIQ.Store(&fn)

	// The app's push2 registration: its Web Push keys, the endpoint the
	// distributor got, the relay as the push service.
	sub, err := relaytest.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", encryptedEnable(t, sub, endpoint, origin)); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()
	waitFor(t, 10*time.Second, func() bool {
		out, _ := s.Admin("/registrations?account=juliet@" + domain)
		return strings.Contains(out, relayJID)
	})
	time.Sleep(300 * time.Millisecond) // the session's end reaches the bridge

	metric := func(want string) func() bool {
		return func() bool { m, _ := s.Admin("/metrics"); return strings.Contains(m, want) }
	}
	waitPushIQ := func() *stanza.Element {
		t.Helper()
		select {
		case in := <-pushes:
			return in
		case <-time.After(20 * time.Second):
			t.Fatal("no UnifiedPush push at the distributor within 20s")
			return nil
		}
	}

	send(t, romeo, chat("juliet@"+domain, "up1", "Wherefore art thou Romeo?"))
	in := waitPushIQ()
	push := in.Child(nsUnifiedPush, "push")
	if in.AttrValue("from") != domain || push.AttrValue("instance") != instance || push.AttrValue("application") != application {
		t.Errorf("push from %q for instance %q application %q, want from %s for the registered %s %s",
			in.AttrValue("from"), push.AttrValue("instance"), push.AttrValue("application"), domain, instance, application)
	}
	body, err := base64.StdEncoding.DecodeString(strings.TrimSpace(push.Text))
	if err != nil {
		t.Fatalf("the push's text is not base64: %v", err)
	}
	if len(body) == 0 || len(body) > webpush.MaxBodySize {
		t.Fatalf("a body of %d bytes", len(body))
	}
	plaintext, err := webpush.Decrypt(sub.UA, sub.Keys.AuthSecret, body)
	if err != nil {
		t.Fatalf("decrypting the body the distributor got: %v", err)
	}
	if !bytes.Contains(plaintext, []byte("Wherefore art thou Romeo?")) || !bytes.Contains(plaintext, []byte(`<envelope xmlns="urn:xmpp:sce:1">`)) {
		t.Errorf("plaintext %q", plaintext)
	}
	// mod_unified_push answered 201 once the distributor confirmed: the
	// notification is delivered, not retried.
	waitFor(t, 10*time.Second, metric(`push2_relay_requests_total{class="2xx"} 1`))
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="delivered"} 1`))

	// The distributor fails once (mod_unified_push answers 500 to any
	// error from it): push2d retries, the retry is delivered, the same
	// notification.
	failures.Store(1)
	send(t, romeo, chat("juliet@"+domain, "up2", "retry me"))
	first, second := waitPushIQ(), waitPushIQ()
	if first.ChildText(nsUnifiedPush, "push") != second.ChildText(nsUnifiedPush, "push") {
		t.Error("the retry carries another notification")
	}
	waitFor(t, 10*time.Second, metric(`push2_relay_requests_total{class="5xx"} 1`))
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="retry"} 1`))
	waitFor(t, 10*time.Second, metric(`push2_outbox_total{event="delivered"} 2`))
	select {
	case <-pushes:
		t.Error("a delivered notification was pushed again")
	case <-time.After(time.Second):
	}
}

// random32 is 32 random bytes in base64, as mod_unified_push wants an
// instance and an application identifier.
func random32(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// freeTCPPort is a port on 127.0.0.1 nobody listens on right now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
