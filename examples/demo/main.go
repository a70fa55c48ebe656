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
// it running and prints how to connect a client.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
	"github.com/push2/push2/profiles/webpush"
)

func main() {
	keep := flag.Bool("keep", false, "keep the stack running after the demo (Ctrl-C to stop)")
	verbose := flag.Bool("v", false, "show Prosody's and push2d's logs")
	plain := flag.Bool("plain", false, "use the notify-only send profile instead of the encrypted one")
	old := flag.Bool("prosody012", false, "run Debian 12's Prosody 0.12 instead of Prosody 13")
	flag.Parse()
	version := prosodytest.Prosody13
	if *old {
		version = prosodytest.Prosody012
	}
	if err := run(*keep, *verbose, *plain, version); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}

func run(keep, verbose, plain bool, version prosodytest.Version) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	dir, err := os.MkdirTemp("", "push2-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("starting %s (with mod_push2_bridge) and push2d on 127.0.0.1", version)
	var logw io.Writer
	if verbose {
		logw = os.Stderr
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	s, err := stack.Start(sctx, dir, stack.Options{Prosody: version, Log: logw})
	scancel()
	if err != nil {
		return err
	}
	defer s.Close()
	domain := s.Prosody.Domain()
	fmt.Printf("Prosody %s c2s %s, component %s; push2d admin http://%s\n", s.Prosody.RunningVersion(), s.Prosody.C2SAddr(), s.Prosody.ComponentAddr(), s.AdminAddr)

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

	id, err := webpush.GenerateIdentity()
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
	enable := `<enable xmlns="urn:xmpp:push2:0"><service>pusher@` + domain + `</service>` +
		`<client>demo-device-token</client>` +
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
			s.Prosody.C2SAddr(), domain, domain, s.AdminTokenFile, s.AdminAddr, domain)
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
