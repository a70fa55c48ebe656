package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

// runDecrypt implements `push2 decrypt`: the client's side of the encrypted
// send profile. It decrypts a notification's payload with a keys file from
// `push2 keys`, prints the envelope and verifies the JWT the way a push
// service would (webpush.VerifyAt, not the Signer that made it).
func runDecrypt(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("decrypt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: push2 decrypt --keys FILE [flags] [NOTIFICATION_FILE|-]\n\nDecrypts the <encrypted/> payload of a notification (a <message/> with a\n<notification xmlns='urn:xmpp:push2:0'/>, or the bare <notification/>; stdin\nwithout a file or with -), prints the decrypted envelope XML, then the claims\nof its <jwt/>, verified, as JSON. Exits 1 if either fails.\n\nflags:")
		fs.PrintDefaults()
	}
	keysPath := fs.String("keys", "", "the JSON written by 'push2 keys' (required)")
	at := fs.String("at", "", "verify the JWT as of this RFC 3339 `TIME` instead of now (for an old notification)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *keysPath == "" {
		fmt.Fprintln(stderr, "push2 decrypt: --keys is required")
		return 2
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "push2 decrypt: unexpected argument %q\n", fs.Arg(1))
		return 2
	}
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			fmt.Fprintf(stderr, "push2 decrypt: --at %q is not an RFC 3339 time such as 2025-03-01T12:00:00Z\n", *at)
			return 2
		}
		now = t
	}

	id, err := readKeys(*keysPath)
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: --keys %s: %v\n", *keysPath, err)
		return 1
	}
	file := "-"
	if fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	var raw []byte
	if file == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, stanza.MaxStanzaBytes+1))
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		fmt.Fprintln(stderr, "push2 decrypt:", err)
		return 1
	}
	el, err := stanza.Parse(raw)
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: %s: %v\n", file, err)
		return 1
	}
	body, token, key, err := profiles.NotificationParts(el)
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: %s: %v\n", file, err)
		return 1
	}

	ua, err := id.UAPrivateKey()
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: --keys %s: %v\n", *keysPath, err)
		return 1
	}
	auth, err := webpush.DecodeBase64(id.AuthSecret)
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: --keys %s: auth_secret: %v\n", *keysPath, err)
		return 1
	}
	plain, err := webpush.Decrypt(ua, auth, body)
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: the payload cannot be decrypted with these keys: %v\n", err)
		return 1
	}
	env, err := stanza.Parse(plain)
	if err != nil || !env.Is(stanza.NSSCE, "envelope") {
		fmt.Fprintf(stderr, "push2 decrypt: decrypted, but the plaintext is not an <envelope xmlns='urn:xmpp:sce:1'/>:\n%s\n", plain)
		return 1
	}
	fmt.Fprintf(stderr, "payload: %d-byte body = %d header + %d plaintext + 1 delimiter + %d padding + %d tag\n",
		len(body), webpush.HeaderLen, len(plain), len(body)-len(plain)-webpush.Overhead, webpush.TagLen)
	fmt.Fprintf(stdout, "%s\n", plain)

	if token == "" {
		fmt.Fprintln(stderr, "jwt: the notification carries no <jwt/>")
		return 0
	}
	pub, err := webpush.DecodeBase64(key)
	if err != nil {
		fmt.Fprintln(stderr, "push2 decrypt: the <jwt key=…/> attribute is not valid base64")
		return 1
	}
	if id.VAPIDPublic != "" {
		want, err := webpush.DecodeBase64(id.VAPIDPublic)
		if err != nil || !bytes.Equal(want, pub) {
			fmt.Fprintln(stderr, "push2 decrypt: the <jwt key=…/> is not the vapid_public of the keys file")
			return 1
		}
	}
	claims, err := webpush.VerifyAt(token, pub, now)
	if err != nil {
		fmt.Fprintf(stderr, "push2 decrypt: the JWT does not verify: %v\n", err)
		return 1
	}
	js, err := json.MarshalIndent(claims, "", "  ")
	if err != nil {
		fmt.Fprintln(stderr, "push2 decrypt:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", js)
	fmt.Fprintln(stderr, "jwt: signature, alg and exp verified")
	return 0
}

// readKeys reads a keys file written by `push2 keys`.
func readKeys(path string) (webpush.Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return webpush.Identity{}, err
	}
	var k keysFile
	if err := json.Unmarshal(b, &k); err != nil {
		return webpush.Identity{}, fmt.Errorf("not a keys file: %v", err)
	}
	if k.UAPrivate == "" || k.AuthSecret == "" {
		return webpush.Identity{}, fmt.Errorf("ua_private and auth_secret are required")
	}
	return k.Identity, nil
}
