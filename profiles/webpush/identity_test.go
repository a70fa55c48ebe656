package webpush

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestGenerateIdentity(t *testing.T) {
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	var back Identity
	if err := json.Unmarshal(js, &back); err != nil || back != id {
		t.Fatalf("JSON round trip: %v", err)
	}
	for _, name := range []string{"ua_private", "ua_public", "auth_secret", "vapid_alg", "vapid_private", "vapid_public"} {
		if !strings.Contains(string(js), `"`+name+`"`) {
			t.Errorf("JSON lacks %s: %s", name, js)
		}
	}
	lens := map[string]struct {
		v string
		n int
	}{
		"ua_private": {id.UAPrivate, 32}, "ua_public": {id.UAPublic, 65},
		"auth_secret": {id.AuthSecret, 16}, "vapid_public": {id.VAPIDPublic, 65},
	}
	for name, f := range lens {
		if strings.ContainsAny(f.v, "+/=") {
			t.Errorf("%s is not unpadded base64url", name)
		}
		if b := mustB64(t, f.v); len(b) != f.n {
			t.Errorf("%s is %d bytes, want %d", name, len(b), f.n)
		}
	}
	if id.VAPIDAlg != "ES256" {
		t.Errorf("VAPIDAlg = %s", id.VAPIDAlg)
	}

	// The pieces fit together.
	k, err := id.Keys()
	if err != nil {
		t.Fatal(err)
	}
	ua, err := id.UAPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	body, err := Encrypt(k, []byte("hi"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Decrypt(ua, k.AuthSecret, body); err != nil || string(pt) != "hi" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
	vk, err := id.VAPIDKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(vk.PublicRaw(), mustB64(t, id.VAPIDPublic)) {
		t.Fatal("vapid_public does not match vapid_private")
	}
	tok, err := NewSigner(0).Sign(vk, []Claim{{"aud", "https://push.example.net"}}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(tok, mustB64(t, id.VAPIDPublic)); err != nil {
		t.Fatal(err)
	}

	// Printing an Identity hides its secrets.
	for _, s := range []string{fmt.Sprint(id), fmt.Sprintf("%+v", id), fmt.Sprintf("%#v", id)} {
		for _, secret := range []string{id.UAPrivate, id.AuthSecret, id.VAPIDPrivate} {
			if strings.Contains(s, secret[:12]) {
				t.Errorf("formatted Identity shows a secret: %s", s)
			}
		}
	}

	// Two identities share nothing.
	id2, _ := GenerateIdentity()
	if id2.UAPrivate == id.UAPrivate || id2.AuthSecret == id.AuthSecret || id2.VAPIDPrivate == id.VAPIDPrivate {
		t.Fatal("GenerateIdentity repeated a secret")
	}
}
