package webpush

// Independent checks against a second implementation: the npm package
// http_ece (RFC 8188/8291, used by the web-push library) for encryption, and
// node's own crypto module for VAPID signatures. Node and npm are required:
// without them these tests fail, they do not skip.
//
// The node project lives in testdata/node: package.json and package-lock.json
// are committed, node_modules is not (see its .gitignore). If
// testdata/node/node_modules/http_ece is missing, the test runs `npm ci`
// there, which installs exactly the locked version from the npm registry.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const nodeDir = "testdata/node"

var (
	nodeOnce sync.Once
	nodeBin  string
	nodeErr  error
)

// requireNode returns the node binary with http_ece installed, or fails the
// test with what is missing and how to get it.
func requireNode(t *testing.T) string {
	t.Helper()
	nodeOnce.Do(func() { nodeBin, nodeErr = setupNode() })
	if nodeErr != nil {
		t.Fatalf("the independent http_ece/node checks cannot run: %v", nodeErr)
	}
	return nodeBin
}

func setupNode() (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		if node, err = exec.LookPath("nodejs"); err != nil {
			return "", errors.New("node is not installed or not on PATH; install Node.js 16 or later (Debian: apt-get install nodejs npm)")
		}
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "http_ece", "ece.js")); err == nil {
		return node, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("%s/node_modules is missing and npm is not installed or not on PATH, so http_ece cannot be installed; install npm (Debian: apt-get install npm) or run 'npm ci' in %s", nodeDir, nodeDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("'npm ci' in %s failed (%v):\n%s", nodeDir, err, out)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "http_ece", "ece.js")); err != nil {
		return "", fmt.Errorf("'npm ci' in %s succeeded but http_ece is still missing", nodeDir)
	}
	return node, nil
}

// nodeRequest is one request to testdata/node/check.js; see that file.
type nodeRequest struct {
	Op         string `json:"op"`
	Body       string `json:"body,omitempty"`
	UAPrivate  string `json:"ua_private,omitempty"`
	UAPublic   string `json:"ua_public,omitempty"`
	AuthSecret string `json:"auth_secret,omitempty"`
	Plaintext  string `json:"plaintext,omitempty"`
	RS         int    `json:"rs,omitempty"`
	Pad        int    `json:"pad,omitempty"`
	Token      string `json:"token,omitempty"`
	PublicKey  string `json:"public_key,omitempty"`
}

type nodeResult struct {
	Error     string         `json:"error"`
	Plaintext string         `json:"plaintext"`
	Body      string         `json:"body"`
	Header    map[string]any `json:"header"`
	Claims    map[string]any `json:"claims"`
}

// runNode sends all requests to one node process and returns its results in
// order.
func runNode(t *testing.T, reqs []nodeRequest) []nodeResult {
	t.Helper()
	node := requireNode(t)
	in, err := json.Marshal(reqs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.js")
	cmd.Dir = nodeDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.js failed: %v\n%s", err, stderr.String())
	}
	var res []nodeResult
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(reqs) {
		t.Fatalf("node check.js printed %d results for %d requests (%v)", len(res), len(reqs), err)
	}
	return res
}

func TestInteropHTTPECE(t *testing.T) {
	k, ua := newSubscription(t)
	uaPriv, uaPub, auth := EncodeBase64URL(ua.Bytes()), EncodeBase64URL(k.UAPublic.Bytes()), EncodeBase64URL(k.AuthSecret)

	type goCase struct {
		name      string
		plaintext []byte
		body      []byte
		wantOK    bool
	}
	var cases []goCase

	// The RFC's own body, as a check on the harness.
	cases = append(cases, goCase{"RFC 8291 Appendix A", []byte(rfc8291.plaintext), mustB64(t, rfc8291.body), true})

	// Go encrypts, http_ece decrypts: sizes across the bucket classes.
	for _, n := range []int{0, 1, 41, 255, 256, 1024, 2049, 3072, MaxPlaintext, 5000} {
		pt := make([]byte, n)
		rand.Read(pt)
		bucket, err := BucketPad(n, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		for _, pad := range []int{0, 3, bucket} {
			body, err := Encrypt(k, pt, pad)
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, goCase{fmt.Sprintf("%d bytes, pad %d", n, pad), pt, body, true})
		}
	}
	// Tampering must be caught by http_ece too (so the harness can fail).
	body, _ := Encrypt(k, []byte("integrity"), 0)
	tampered := append([]byte(nil), body...)
	tampered[HeaderLen+1] ^= 0x80
	cases = append(cases, goCase{"tampered", []byte("integrity"), tampered, false})

	var reqs []nodeRequest
	for _, c := range cases {
		r := nodeRequest{Op: "decrypt", Body: EncodeBase64URL(c.body), UAPrivate: uaPriv, AuthSecret: auth}
		if c.name == "RFC 8291 Appendix A" {
			r.UAPrivate, r.AuthSecret = rfc8291.uaPrivate, rfc8291.authSecret
		}
		reqs = append(reqs, r)
	}

	// http_ece encrypts, Go decrypts: single and multiple records, padding.
	type nodeCase struct {
		plaintext []byte
		rs, pad   int
	}
	var ncases []nodeCase
	for _, nc := range []struct{ n, rs, pad int }{{0, 0, 0}, {41, 0, 0}, {1000, 0, 100}, {3000, 0, 0}, {100, 40, 0}, {1000, 100, 50}, {5, 18, 0}} {
		pt := make([]byte, nc.n)
		rand.Read(pt)
		ncases = append(ncases, nodeCase{pt, nc.rs, nc.pad})
		reqs = append(reqs, nodeRequest{Op: "encrypt", Plaintext: EncodeBase64URL(pt), UAPublic: uaPub, AuthSecret: auth, RS: nc.rs, Pad: nc.pad})
	}

	res := runNode(t, reqs)
	for i, c := range cases {
		r := res[i]
		if !c.wantOK {
			if r.Error == "" {
				t.Errorf("%s: http_ece accepted the body", c.name)
			}
			continue
		}
		if r.Error != "" {
			t.Errorf("%s: http_ece: %s", c.name, r.Error)
			continue
		}
		if got := mustB64(t, r.Plaintext); !bytes.Equal(got, c.plaintext) {
			t.Errorf("%s: http_ece decrypted %d bytes that differ from the plaintext", c.name, len(got))
		}
	}
	for i, nc := range ncases {
		r := res[len(cases)+i]
		name := fmt.Sprintf("http_ece encrypt of %d bytes, rs %d, pad %d", len(nc.plaintext), nc.rs, nc.pad)
		if r.Error != "" {
			t.Errorf("%s: %s", name, r.Error)
			continue
		}
		got, err := Decrypt(ua, k.AuthSecret, mustB64(t, r.Body))
		if err != nil {
			t.Errorf("%s: Decrypt: %v", name, err)
			continue
		}
		if !bytes.Equal(got, nc.plaintext) {
			t.Errorf("%s: Decrypt gave different bytes", name)
		}
	}
}

func TestInteropVAPIDNodeCrypto(t *testing.T) {
	now := time.Now()
	s := NewSigner(0)
	type jwtCase struct {
		name   string
		token  string
		pub    []byte
		wantOK bool
	}
	var cases []jwtCase
	for _, alg := range []string{"ES256", "ES384", "ES512"} {
		key := mustVAPID(t, alg)
		tok, err := s.Sign(key, []Claim{{"aud", "https://push.example.net"}}, "mailto:ops@example.org", now)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, jwtCase{alg, tok, key.PublicRaw(), true})
		cases = append(cases, jwtCase{alg + " wrong key", tok, mustVAPID(t, alg).PublicRaw(), false})
		p := strings.Split(tok, ".")
		sig := mustB64(t, p[2])
		sig[0] ^= 1
		cases = append(cases, jwtCase{alg + " bad signature", p[0] + "." + p[1] + "." + EncodeBase64URL(sig), key.PublicRaw(), false})
	}
	var reqs []nodeRequest
	for _, c := range cases {
		reqs = append(reqs, nodeRequest{Op: "verify_jwt", Token: c.token, PublicKey: EncodeBase64URL(c.pub)})
	}
	res := runNode(t, reqs)
	for i, c := range cases {
		r := res[i]
		if !c.wantOK {
			if r.Error == "" {
				t.Errorf("%s: node verified it", c.name)
			}
			continue
		}
		if r.Error != "" {
			t.Errorf("%s: node: %s", c.name, r.Error)
			continue
		}
		if r.Header["typ"] != "JWT" || r.Claims["aud"] != "https://push.example.net" || r.Claims["sub"] != "mailto:ops@example.org" {
			t.Errorf("%s: header %v claims %v", c.name, r.Header, r.Claims)
		}
		exp, _ := r.Claims["exp"].(float64)
		if d := time.Unix(int64(exp), 0).Sub(now); d <= 0 || d > MaxTokenLifetime {
			t.Errorf("%s: exp is %v ahead", c.name, d)
		}
	}
}
