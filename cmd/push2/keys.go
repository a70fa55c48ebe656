package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

// keysFile is what `push2 keys` writes and `push2 decrypt --keys` reads: a
// webpush.Identity (its fields at the top level, unpadded base64url) and
// the <enable/> that registers it.
type keysFile struct {
	webpush.Identity
	Enable string `json:"enable,omitempty"`
}

// runKeys implements `push2 keys`: a fresh test identity for the encrypted
// send profile (urn:xmpp:push2:send:sce+rfc8291+rfc8292:0) and a ready
// <enable/> that uses it.
func runKeys(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: push2 keys [flags]\n\nPrints a fresh test identity (user agent key pair, auth secret, VAPID key) as JSON,\nwith a ready <enable/> for the encrypted send profile in its \"enable\" field.\nWith --out, writes the JSON to a file and prints the <enable/> on stdout.\nThe JSON holds private keys: use it for tests and demos only.\n\nflags:")
		fs.PrintDefaults()
	}
	service := fs.String("service", "pusher@push.example.com", "the push service JID, for <service/>")
	client := fs.String("client", "", "the opaque <client/> value (default: https://push.example.com/ and a random id)")
	match := fs.String("match", profiles.MatchImportant, "the match profile URI")
	aud := fs.String("aud", "https://push.example.com", "the JWT \"aud\" claim: the origin of the push resource (RFC 8292 §2)")
	sub := fs.String("sub", "", "a JWT \"sub\" claim for the registration (default: the server chooses, xmpp:DOMAIN)")
	noJWT := fs.Bool("no-jwt", false, "register no VAPID key: notifications carry no <jwt/>")
	out := fs.String("out", "", "write the JSON to `FILE` (mode 0600) and print the <enable/> on stdout")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "push2 keys: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *client == "" {
		var b [12]byte
		rand.Read(b[:])
		*client = "https://push.example.com/" + base64.RawURLEncoding.EncodeToString(b[:])
	}

	id, err := webpush.GenerateIdentity()
	if err != nil {
		fmt.Fprintln(stderr, "push2 keys:", err)
		return 1
	}
	enable, err := enableFor(id, enableOptions{service: *service, client: *client, match: *match, aud: *aud, sub: *sub, jwt: !*noJWT})
	if err != nil {
		fmt.Fprintln(stderr, "push2 keys:", err)
		return 2
	}
	js, err := json.MarshalIndent(keysFile{Identity: id, Enable: enable}, "", "  ")
	if err != nil {
		fmt.Fprintln(stderr, "push2 keys:", err)
		return 1
	}
	js = append(js, '\n')
	if *out == "" {
		stdout.Write(js)
		return 0
	}
	if err := os.WriteFile(*out, js, 0o600); err != nil {
		fmt.Fprintln(stderr, "push2 keys:", err)
		return 1
	}
	// WriteFile keeps the mode of an existing file; the keys are secret.
	if err := os.Chmod(*out, 0o600); err != nil {
		fmt.Fprintln(stderr, "push2 keys:", err)
		return 1
	}
	fmt.Fprint(stdout, enable)
	return 0
}

type enableOptions struct {
	service, client, match, aud, sub string
	jwt                              bool
}

// enableFor writes the <enable/> for id, indented for people, and checks it
// the way the engine will (with a throwaway account), so that bad flags are
// refused here rather than at the server.
//
// The keys are written in standard base64 (RFC 4648 §4), which every
// implementation of the profile reads; push2 accepts the URL-safe alphabet
// too.
func enableFor(id webpush.Identity, o enableOptions) (string, error) {
	std := func(s string) (string, error) {
		b, err := webpush.DecodeBase64(s)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	ua, err := std(id.UAPublic)
	if err != nil {
		return "", err
	}
	auth, err := std(id.AuthSecret)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`<enable xmlns="` + stanza.NSPush2 + `">` + "\n")
	fmt.Fprintf(&b, "  <service>%s</service>\n", escape(o.service))
	fmt.Fprintf(&b, "  <client>%s</client>\n", escape(o.client))
	fmt.Fprintf(&b, "  <match profile=\"%s\">\n", escape(o.match))
	fmt.Fprintf(&b, "    <send xmlns=\"%s\">\n", profiles.SendEncrypted)
	fmt.Fprintf(&b, "      <ua-public>%s</ua-public>\n", ua)
	fmt.Fprintf(&b, "      <auth-secret>%s</auth-secret>\n", auth)
	if o.jwt {
		key, err := std(id.VAPIDPrivate)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "      <jwt-alg>%s</jwt-alg>\n", id.VAPIDAlg)
		fmt.Fprintf(&b, "      <jwt-key>%s</jwt-key>\n", key)
		fmt.Fprintf(&b, "      <jwt-claim name=\"aud\">%s</jwt-claim>\n", escape(o.aud))
		if o.sub != "" {
			fmt.Fprintf(&b, "      <jwt-claim name=\"sub\">%s</jwt-claim>\n", escape(o.sub))
		}
	}
	b.WriteString("    </send>\n  </match>\n</enable>\n")

	el, err := stanza.Parse([]byte(b.String()))
	if err != nil {
		return "", err
	}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		return "", err
	}
	if _, err := engine.ParseEnable(context.Background(), reg, engine.DefaultLimits, "user@push2.invalid", "keys", el); err != nil {
		return "", fmt.Errorf("the <enable/> would be refused: %s", describe(err))
	}
	return b.String(), nil
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
