// Command demo is `make demo`: the whole push2 stack on 127.0.0.1 from real
// parts, showing a push arriving.
//
// It starts Prosody 13 (from bookworm-backports, unpacked by
// scripts/install-deps.sh; -prosody012 for Debian 12's Prosody 0.12) with the
// bridge module and a generated config and data dir, starts push2d, creates three accounts (juliet, romeo and
// pusher, the push service), has juliet register for encrypted pushes and go
// offline (showing the registration on push2d's admin interface, with its
// token), has romeo write to her, and prints what the push service receives
// — the notification stanza, then its payload decrypted with juliet's keys
// and the verified JWT. Then it shuts everything down, or with -keep leaves
// it running and prints how to connect a client. With -webpush the
// registration names push2d's Web Push relay, and the push arrives as an
// RFC 8030 request at a local Web Push receiver, which decrypts it.
package main

import (
	"context"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/relay/relaytest"
	"github.com/push2/push2/internal/stack"
	"github.com/push2/push2/profiles/webpush"
)

func main() {
	keep := flag.Bool("keep", false, "keep the stack running after the demo (Ctrl-C to stop)")
	verbose := flag.Bool("v", false, "show Prosody's and push2d's logs")
	plain := flag.Bool("plain", false, "use the notify-only send profile instead of the encrypted one")
	old := flag.Bool("prosody012", false, "run Debian 12's Prosody 0.12 instead of Prosody 13")
	ejabberd := flag.Bool("ejabberd", false, "run ejabberd (24.12 from bookworm-backports, with examples/ejabberd's bridge) instead of Prosody")
	wp := flag.Bool("webpush", false, "push through push2d's Web Push relay to a local Web Push receiver, which decrypts it (docs/relay.md)")
	flag.Parse()
	webPush = *wp
	version := prosodytest.Prosody13
	if *old {
		version = prosodytest.Prosody012
	}
	server := stack.Prosody
	if *ejabberd {
		server = stack.Ejabberd
	}
	if err := run(*keep, *verbose, *plain, version, server); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// webPush is -webpush.
var webPush bool

// relayJID is the relay's push service JID in the -webpush demo.
const relayJID = "webpush.localhost"

func step(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}

func run(keep, verbose, plain bool, version prosodytest.Version, server stack.ServerKind) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	dir, err := os.MkdirTemp("", "push2-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	name := "Prosody " + string(version)
	if server == stack.Ejabberd {
		name = "ejabberd"
	}
	step("starting %s (with mod_push2_bridge) and push2d on 127.0.0.1", name)
	var logw io.Writer
	if verbose {
		logw = os.Stderr
	}
	id, err := webpush.GenerateIdentity()
	if err != nil {
		return err
	}
	opts := stack.Options{Server: server, Prosody: version, Log: logw}
	var rcv *relaytest.Receiver
	if webPush {
		if rcv, err = startReceiver(id, dir, &opts); err != nil {
			return err
		}
		defer rcv.Close()
		fmt.Printf("Web Push receiver (a local push service) at %s\n", rcv.URL)
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	s, err := stack.Start(sctx, dir, opts)
	scancel()
	if err != nil {
		return err
	}
	defer s.Close()
	domain := s.Server.Domain()
	if server == stack.Ejabberd {
		name = "ejabberd"
	} else {
		name = "Prosody"
	}
	fmt.Printf("%s %s c2s %s, component %s; push2d admin http://%s\n", name, s.Server.RunningVersion(), s.Server.C2SAddr(), s.Server.ComponentAddr(), s.AdminAddr)

	lctx, lcancel := context.WithTimeout(ctx, time.Minute)
	defer lcancel()
	pusher, err := s.Login(lctx, "pusher", "service", "pusher-password", true)
	if err != nil {
		return err
	}
	defer pusher.Close()
	romeo, err := s.Login(lctx, "romeo", "orchard", "romeo-password", true)
	if err != nil {
		return err
	}
	defer romeo.Close()
	juliet, err := s.Login(lctx, "juliet", "balcony", "juliet-password", true)
	if err != nil {
		return err
	}

	send := `<send xmlns="urn:xmpp:push2:send:notify-only:0"/>`
	if !plain {
		send = `<send xmlns="urn:xmpp:push2:send:sce+rfc8291+rfc8292:0">` +
			`<ua-public>` + id.UAPublic + `</ua-public><auth-secret>` + id.AuthSecret + `</auth-secret>` +
			`<jwt-alg>ES256</jwt-alg><jwt-key>` + id.VAPIDPrivate + `</jwt-key>` +
			`<jwt-claim name="aud">https://push.example.com</jwt-claim></send>`
	}
	service, client := "pusher@"+domain, "demo-device-token"
	if webPush {
		service, client = relayJID, rcv.Endpoint("/push/juliet-subscription")
		send = strings.Replace(send, "https://push.example.com", rcv.URL, 1)
	}
	enable := `<enable xmlns="urn:xmpp:push2:0"><service>` + service + `</service>` +
		`<client>` + client + `</client>` +
		`<match profile="urn:xmpp:push2:match:important">` + send + `</match></enable>`
	step("juliet registers for pushes (keys shortened here):")
	shown := enable
	for _, secret := range []string{id.AuthSecret, id.VAPIDPrivate, id.UAPublic} {
		shown = strings.ReplaceAll(shown, secret, secret[:8]+"…")
	}
	fmt.Println(shown)
	iq := stanza.NewElement(stanza.NSClient, "iq", "type", "set")
	iq.Append(stanza.MustParse(enable))
	resp, err := juliet.IQ(lctx, iq)
	if err != nil {
		return err
	}
	fmt.Printf("push2d answered: <iq type=%q/>\n", resp.AttrValue("type"))
	if resp.AttrValue("type") != "result" {
		return fmt.Errorf("enable refused: %s", resp)
	}
	step("push2d's admin interface lists it (GET /registrations with the bearer token of admin.token_file, %s):", s.AdminTokenFile)
	regs, err := s.Admin("/registrations?account=juliet@" + domain)
	if err != nil {
		return fmt.Errorf("admin interface: %w", err)
	}
	fmt.Print(regs)

	step("juliet goes offline; romeo writes to her")
	juliet.Close()
	time.Sleep(300 * time.Millisecond)
	msg := stanza.NewElement(stanza.NSClient, "message", "to", "juliet@"+domain, "type", "chat", "id", "demo-1")
	msg.Append(stanza.NewElement(stanza.NSClient, "body").WithText("Wherefore art thou, Juliet?"))
	if err := romeo.Send(lctx, msg); err != nil {
		return err
	}

	if webPush {
		return showWebPush(ctx, rcv, s, keep)
	}
	step("the push service (pusher@%s) receives:", domain)
	var n *stanza.Element
	deadline := time.After(20 * time.Second)
	for n == nil {
		select {
		case m := <-pusher.Messages:
			if m.Child(stanza.NSPush2, "notification") != nil {
				n = m
			}
		case <-deadline:
			return fmt.Errorf("no notification within 20s; push2d log:\n%s", s.Push2dLog())
		}
	}
	fmt.Println(n.String())
	if !plain {
		if err := showDecrypted(n, id); err != nil {
			return err
		}
	}

	if keep {
		step("the stack keeps running. Connect a client to %s (plain, no TLS) as juliet@%s / juliet-password, romeo@%s / romeo-password; push2d admin: curl -H \"Authorization: Bearer $(cat %s)\" 'http://%s/registrations?account=juliet@%s'. Ctrl-C stops.",
			s.Server.C2SAddr(), domain, domain, s.AdminTokenFile, s.AdminAddr, domain)
		<-ctx.Done()
	}
	step("shutting down")
	return nil
}

// showDecrypted is what a push service (or the app, on the device) does
// with an encrypted notification: decrypt the RFC 8291 payload with the
// device's private key and auth secret, and verify the RFC 8292 JWT.
func showDecrypted(n *stanza.Element, id webpush.Identity) error {
	notif := n.Child(stanza.NSPush2, "notification")
	payload := notif.Child(stanza.NSRFC8291, "encrypted").ChildText("", "payload")
	body, err := webpush.DecodeBase64(payload)
	if err != nil {
		return err
	}
	priv, err := id.UAPrivateKey()
	if err != nil {
		return err
	}
	auth, _ := webpush.DecodeBase64(id.AuthSecret)
	plain, err := webpush.Decrypt(priv, auth, body)
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	step("decrypted with juliet's keys (%d bytes of ciphertext):", len(body))
	fmt.Println(string(plain))
	if jwt := notif.Child(stanza.NSPush2, "jwt"); jwt != nil {
		pub, _ := webpush.DecodeBase64(jwt.AttrValue("key"))
		claims, err := webpush.Verify(jwt.Text, pub)
		if err != nil {
			return fmt.Errorf("JWT: %w", err)
		}
		step("JWT verified; claims: %v", claims)
	}
	return nil
}

// startReceiver starts the local Web Push receiver with juliet's keys and
// configures push2d's relay to post to it (its certificate trusted through
// relay.ca_file, 127.0.0.1 allow-listed).
func startReceiver(id webpush.Identity, dir string, opts *stack.Options) (*relaytest.Receiver, error) {
	priv, err := id.UAPrivateKey()
	if err != nil {
		return nil, err
	}
	auth, _ := webpush.DecodeBase64(id.AuthSecret)
	rcv := relaytest.New(priv, auth)
	ca := filepath.Join(dir, "receiver-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rcv.Certificate().Raw}), 0o600); err != nil {
		rcv.Close()
		return nil, err
	}
	opts.Push2dConfig = fmt.Sprintf("\n[relay]\njid = %q\nallow_networks = [\"127.0.0.1\"]\nca_file = %q\n", relayJID, ca)
	return rcv, nil
}

// showWebPush waits for the relayed request at the receiver and shows it:
// the RFC 8030 headers, the verified VAPID claims, the decrypted body.
func showWebPush(ctx context.Context, rcv *relaytest.Receiver, s *stack.Stack, keep bool) error {
	step("push2d's relay (%s) posts to the Web Push receiver, which checks and decrypts:", relayJID)
	var p relaytest.Push
	select {
	case p = <-rcv.C():
	case <-time.After(20 * time.Second):
		return fmt.Errorf("no Web Push request within 20s; push2d log:\n%s", s.Push2dLog())
	}
	if p.Err != nil {
		return fmt.Errorf("the receiver refused the request: %w", p.Err)
	}
	auth := p.Header.Get("Authorization")
	if i := strings.Index(auth, "t="); i >= 0 && len(auth) > i+22 {
		auth = auth[:i+22] + "…" + auth[strings.Index(auth, ", k="):]
	}
	fmt.Printf("POST %s\n", p.Path)
	for _, h := range []string{"Content-Type", "Content-Encoding", "TTL", "Urgency"} {
		fmt.Printf("%s: %s\n", h, p.Header.Get(h))
	}
	fmt.Printf("Authorization: %s\n(%d bytes of aes128gcm body)\n", auth, len(p.Body))
	step("VAPID token verified with k; claims: %v", p.Claims)
	step("decrypted at the receiver with juliet's private key:")
	fmt.Println(string(p.Plaintext))
	// The relay counts the request once the receiver's answer is back.
	var relayed string
	for end := time.Now().Add(5 * time.Second); relayed == "" && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		m, _ := s.Admin("/metrics")
		relayed = grepLines(m, "push2_relay_requests_total{")
	}
	step("push2d's metrics: %s", relayed)
	if keep {
		step("the stack keeps running; Ctrl-C stops.")
		<-ctx.Done()
	}
	step("shutting down")
	return nil
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
