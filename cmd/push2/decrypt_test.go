package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
)

const exampleMessage = "../../examples/simulate/message.xml"

// newKeys runs `push2 keys --out` and returns the keys file and the
// <enable/> file.
func newKeys(t *testing.T, args ...string) (keys, enable string) {
	t.Helper()
	dir := t.TempDir()
	keys = filepath.Join(dir, "keys.json")
	var out, errb bytes.Buffer
	if code := run(append([]string{"keys", "--out", keys}, args...), nil, &out, &errb); code != 0 {
		t.Fatalf("push2 keys: exit %d: %s", code, errb.String())
	}
	enable = filepath.Join(dir, "enable.xml")
	if err := os.WriteFile(enable, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return keys, enable
}

// simulate runs `push2 simulate` and returns the notification it printed,
// written to a file.
func simulate(t *testing.T, enable, stanza string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"simulate", "--enable", enable, "--stanza", stanza}, args...), nil, &out, &errb); code != 0 {
		t.Fatalf("push2 simulate: exit %d: %s", code, errb.String())
	}
	if out.Len() == 0 {
		t.Fatalf("push2 simulate printed no notification; stderr: %s", errb.String())
	}
	return writeFile(t, "notification.xml", out.String())
}

// TestSimulateEncrypted is the worked example of docs/encrypted.md:
// push2 keys → push2 simulate → push2 decrypt.
func TestSimulateEncrypted(t *testing.T) {
	keys, enable := newKeys(t)
	notification := simulate(t, enable, exampleMessage, "--account", "user@localhost")
	raw, _ := os.ReadFile(notification)
	if !strings.Contains(string(raw), `<encrypted xmlns="urn:xmpp:sce:rfc8291:0"><payload>`) || !strings.Contains(string(raw), `<jwt key="`) {
		t.Fatalf("notification %s", raw)
	}
	if strings.Contains(string(raw), "Romeo") {
		t.Fatal("the body is in clear in the notification")
	}
	var out, errb bytes.Buffer
	if code := run([]string{"decrypt", "--keys", keys, notification}, nil, &out, &errb); code != 0 {
		t.Fatalf("push2 decrypt: exit %d: %s", code, errb.String())
	}
	xmlLine, jsonPart, _ := strings.Cut(out.String(), "\n")
	env := stanza.MustParse(xmlLine)
	msg := env.Child("urn:xmpp:sce:1", "content").Child(stanza.NSForward, "forwarded").Child(stanza.NSClient, "message")
	if msg.ChildText(stanza.NSClient, "body") != "Art thou not Romeo, and a Montague?" || msg.Child(stanza.NSStanzaID, "stanza-id").AttrValue("id") != "mam-123" {
		t.Errorf("decrypted stanza %s", msg)
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(jsonPart), &claims); err != nil {
		t.Fatalf("claims are not JSON: %v\n%s", err, jsonPart)
	}
	if claims["aud"] != "https://push.example.com" || claims["sub"] != "xmpp:localhost" {
		t.Errorf("claims %v", claims)
	}
	if !strings.Contains(errb.String(), "verified") || !strings.Contains(errb.String(), "padding") {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestDecrypt(t *testing.T) {
	keys, enable := newKeys(t)
	notification := simulate(t, enable, exampleMessage)
	raw, _ := os.ReadFile(notification)
	otherKeys, _ := newKeys(t)
	noJWTKeys, noJWTEnable := newKeys(t, "--no-jwt")
	noJWTNotification := simulate(t, noJWTEnable, exampleMessage)

	// The same user agent keys, another VAPID key.
	var k, other keysFile
	b, _ := os.ReadFile(keys)
	json.Unmarshal(b, &k)
	b, _ = os.ReadFile(otherKeys)
	json.Unmarshal(b, &other)
	k.VAPIDPublic = other.VAPIDPublic
	b, _ = json.Marshal(k)
	wrongVAPID := writeFile(t, "wrong-vapid.json", string(b))

	// A payload with one character changed, well inside the ciphertext.
	el := stanza.MustParse(string(raw))
	payload := el.Child(stanza.NSPush2, "notification").Child("urn:xmpp:sce:rfc8291:0", "encrypted").Child("urn:xmpp:sce:rfc8291:0", "payload")
	flipped := []byte(payload.Text)
	if flipped[200] == 'A' {
		flipped[200] = 'B'
	} else {
		flipped[200] = 'A'
	}
	tampered := strings.Replace(string(raw), payload.Text, string(flipped), 1)
	bare := el.Child(stanza.NSPush2, "notification").String()

	cases := []struct {
		name      string
		args      []string
		stdin     string
		code      int
		stdoutHas string
		stderrHas string
	}{
		{"file", []string{"--keys", keys, notification}, "", 0, "<envelope", "verified"},
		{"stdin", []string{"--keys", keys}, string(raw), 0, "<envelope", "verified"},
		{"stdin dash", []string{"--keys", keys, "-"}, string(raw), 0, `"aud"`, ""},
		{"bare notification", []string{"--keys", keys, writeFile(t, "bare.xml", bare)}, "", 0, "<envelope", "verified"},
		{"no jwt", []string{"--keys", noJWTKeys, noJWTNotification}, "", 0, "<envelope", "no <jwt/>"},
		{"at a time within the token's life", []string{"--keys", keys, "--at", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), notification}, "", 0, `"exp"`, ""},
		{"expired", []string{"--keys", keys, "--at", time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339), notification}, "", 1, "<envelope", "does not verify"},
		{"other keys", []string{"--keys", otherKeys, notification}, "", 1, "", "cannot be decrypted"},
		{"tampered", []string{"--keys", keys, writeFile(t, "t.xml", tampered)}, "", 1, "", "cannot be decrypted"},
		{"jwt key mismatch", []string{"--keys", wrongVAPID, notification}, "", 1, "<envelope", "not the vapid_public"},
		{"not encrypted", []string{"--keys", keys, simulate(t, "../../examples/simulate/enable.xml", exampleMessage)}, "", 1, "", "no <encrypted"},
		{"not a notification", []string{"--keys", keys, exampleMessage}, "", 1, "", "no <notification"},
		{"not XML", []string{"--keys", keys, writeFile(t, "x.xml", "hello")}, "", 1, "", "x.xml"},
		{"missing file", []string{"--keys", keys, "/nonexistent/n.xml"}, "", 1, "", "no such file"},
		{"missing keys file", []string{"--keys", "/nonexistent/k.json", notification}, "", 1, "", "no such file"},
		{"not a keys file", []string{"--keys", writeFile(t, "k.json", `{"foo":1}`), notification}, "", 1, "", "ua_private"},
		{"no --keys", []string{notification}, "", 2, "", "--keys is required"},
		{"bad --at", []string{"--keys", keys, "--at", "yesterday", notification}, "", 2, "", "RFC 3339"},
		{"two files", []string{"--keys", keys, notification, notification}, "", 2, "", "unexpected argument"},
		{"help", []string{"-h"}, "", 0, "", "usage: push2 decrypt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"decrypt"}, tc.args...), strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.stdoutHas) {
				t.Errorf("stdout %q, want %q", out.String(), tc.stdoutHas)
			}
			if !strings.Contains(errb.String(), tc.stderrHas) {
				t.Errorf("stderr %q, want %q", errb.String(), tc.stderrHas)
			}
			if tc.code != 0 && tc.stdoutHas == "" && out.Len() != 0 {
				t.Errorf("stdout %q on failure", out.String())
			}
		})
	}
}

// TestDecryptExample decrypts the notification shipped in
// examples/encrypted/ with its keys, at the time it was made.
func TestDecryptExample(t *testing.T) {
	const dir = "../../examples/encrypted/"
	var out, errb bytes.Buffer
	code := run([]string{"decrypt", "--keys", dir + "keys.json", "--at", exampleTime, dir + "notification.xml"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "Art thou not Romeo, and a Montague?") || !strings.Contains(out.String(), `"sub": "xmpp:localhost"`) {
		t.Errorf("stdout %s", out.String())
	}
	acceptEnable(t, readString(t, dir+"enable.xml"))
}

// exampleTime is when examples/encrypted/notification.xml was made
// (docs/encrypted.md); its JWT is valid for 12 hours from then.
const exampleTime = "2026-11-25T18:00:00Z"

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
