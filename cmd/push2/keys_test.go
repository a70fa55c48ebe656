package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

// acceptEnable runs an <enable/> through the engine's parser with the
// built-in profiles, as the server would.
func acceptEnable(t *testing.T, enable string) *engine.Registration {
	t.Helper()
	el, err := stanza.Parse([]byte(enable))
	if err != nil {
		t.Fatalf("enable does not parse: %v\n%s", err, enable)
	}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	r, err := engine.ParseEnable(context.Background(), reg, engine.DefaultLimits, "user@localhost", "phone", el)
	if err != nil {
		t.Fatalf("enable refused: %v\n%s", err, enable)
	}
	return r
}

func TestKeys(t *testing.T) {
	cases := []struct {
		name      string
		args      []string
		code      int
		stderrHas string
		check     func(t *testing.T, k keysFile, r *engine.Registration)
	}{
		{"defaults", nil, 0, "", func(t *testing.T, k keysFile, r *engine.Registration) {
			if r.Service != "pusher@push.example.com" || !strings.HasPrefix(r.Client, "https://push.example.com/") || r.Matches[0].Profile != profiles.MatchImportant {
				t.Errorf("registration %+v", r)
			}
			keys := r.Matches[0].SendProvisioned.(*profiles.EncryptedKeys)
			if keys.VAPID == nil || len(keys.Claims) != 1 || keys.Claims[0] != (webpush.Claim{Name: "aud", Value: "https://push.example.com"}) {
				t.Errorf("prepared %v %v", keys, keys.Claims)
			}
			if got, _ := webpush.DecodeBase64(k.VAPIDPublic); !bytes.Equal(got, keys.VAPID.PublicRaw()) {
				t.Error("the enable's jwt-key is not the identity's VAPID key")
			}
		}},
		{"flags", []string{"--service", "push.example.net", "--client", "tok&en", "--match", profiles.MatchAll, "--aud", "https://fcm.googleapis.com", "--sub", "mailto:ops@example.net"}, 0, "", func(t *testing.T, k keysFile, r *engine.Registration) {
			if r.Service != "push.example.net" || r.Client != "tok&en" || r.Matches[0].Profile != profiles.MatchAll {
				t.Errorf("registration %+v", r)
			}
			claims := r.Matches[0].SendProvisioned.(*profiles.EncryptedKeys).Claims
			if len(claims) != 2 || claims[0].Value != "https://fcm.googleapis.com" || claims[1] != (webpush.Claim{Name: "sub", Value: "mailto:ops@example.net"}) {
				t.Errorf("claims %v", claims)
			}
		}},
		{"no jwt", []string{"--no-jwt"}, 0, "", func(t *testing.T, k keysFile, r *engine.Registration) {
			if keys := r.Matches[0].SendProvisioned.(*profiles.EncryptedKeys); keys.VAPID != nil || strings.Contains(k.Enable, "jwt") {
				t.Errorf("JWT registered with --no-jwt: %s", k.Enable)
			}
		}},
		{"bad service", []string{"--service", "a@b@c"}, 2, "<service/>", nil},
		{"unknown match profile", []string{"--match", "urn:example:nope"}, 2, "feature-not-implemented", nil},
		{"empty aud", []string{"--aud", ""}, 2, "aud", nil},
		{"argument", []string{"extra"}, 2, "unexpected argument", nil},
		{"help", []string{"-h"}, 0, "usage: push2 keys", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"keys"}, tc.args...), nil, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.stderrHas) {
				t.Errorf("stderr %q, want %q", errb.String(), tc.stderrHas)
			}
			if tc.check == nil {
				return
			}
			var k keysFile
			if err := json.Unmarshal(out.Bytes(), &k); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, out.String())
			}
			for name, v := range map[string]string{"ua_private": k.UAPrivate, "ua_public": k.UAPublic, "auth_secret": k.AuthSecret, "vapid_private": k.VAPIDPrivate, "vapid_public": k.VAPIDPublic} {
				if v == "" {
					t.Errorf("%s missing", name)
				}
			}
			if k.VAPIDAlg != "ES256" {
				t.Errorf("vapid_alg %q", k.VAPIDAlg)
			}
			if _, err := k.Identity.Keys(); err != nil {
				t.Error(err)
			}
			if _, err := k.Identity.UAPrivateKey(); err != nil {
				t.Error(err)
			}
			tc.check(t, k, acceptEnable(t, k.Enable))
		})
	}
}

func TestKeysOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"keys", "--out", path}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "<enable") {
		t.Errorf("stdout is not the <enable/>: %s", out.String())
	}
	acceptEnable(t, out.String())
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("keys file mode %v, want 0600", fi.Mode().Perm())
	}
	k, err := readKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	var kf keysFile
	json.Unmarshal(raw, &kf)
	if kf.Enable != out.String() {
		t.Error("the file's enable differs from stdout")
	}
	// Fresh keys every time.
	var out2 bytes.Buffer
	run([]string{"keys"}, nil, &out2, &errb)
	var k2 keysFile
	json.Unmarshal(out2.Bytes(), &k2)
	if k2.UAPublic == k.UAPublic || k2.VAPIDPublic == k.VAPIDPublic || k2.AuthSecret == k.AuthSecret {
		t.Error("two runs made the same keys")
	}
}
