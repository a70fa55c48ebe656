package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/internal/relay/relaytest"
	"github.com/push2/push2/internal/stack"
)

// componentRelayJID is push2relay's component JID in TestPush2Relay.
const componentRelayJID = "relay.localhost"

// TestPush2Relay: cmd/push2relay as a component of the XMPP server
// (Prosody, or ejabberd with an ejabberd_service listener of its own)
// serves another server's notifications: push2d sends through the bridge,
// the server routes the <message/> to the relay component, the relay posts
// to the Web Push receiver; the body is decrypted independently with npm's
// http_ece and the VAPID token verified with node's crypto; a 410 comes
// back as an XMPP error through the server and the bridge, and push2d
// disables the registration at once.
func TestPush2Relay(t *testing.T) { eachServer(t, testPush2Relay) }

func testPush2Relay(t *testing.T, p server) {
	sub, err := relaytest.NewSubscription()
	if err != nil {
		t.Fatal(err)
	}
	rcv := relaytest.New(sub.UA, sub.Keys.AuthSecret)
	defer rcv.Close()
	const secret = "relay-component-secret"
	s := startStack(t, p, stack.Options{
		Push2dConfig:    fastRetries,
		ExtraComponents: []stack.Component{{Domain: componentRelayJID, Secret: secret}},
	})
	domain := s.Server.Domain()
	startPush2Relay(t, s, rcv, secret, domain)

	romeo := login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	const path = "/push/via-component"
	enable := strings.Replace(encryptedEnable(t, sub, rcv.Endpoint(path), rcv.URL), relayJID, componentRelayJID, 1)
	if resp := iq(t, juliet, "set", enable); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()
	time.Sleep(300 * time.Millisecond)

	send(t, romeo, chat("juliet@"+domain, "c1", "through the component"))
	got := waitPush(t, rcv, 20*time.Second)
	if !strings.Contains(string(got.Plaintext), "through the component") {
		t.Errorf("plaintext %q", got.Plaintext)
	}
	res := nodeCheck(t, []map[string]string{
		{"op": "decrypt", "body": base64.RawURLEncoding.EncodeToString(got.Body), "ua_private": sub.ID.UAPrivate, "auth_secret": sub.ID.AuthSecret},
		{"op": "verify_jwt", "token": vapidParam(got.Header.Get("Authorization"), "t"), "public_key": vapidParam(got.Header.Get("Authorization"), "k")},
	})
	if res[0]["error"] != nil {
		t.Fatalf("http_ece: %v", res[0]["error"])
	}
	pt, _ := base64.RawURLEncoding.DecodeString(res[0]["plaintext"].(string))
	if !bytes.Equal(pt, got.Plaintext) {
		t.Errorf("http_ece decrypted %q, the receiver %q", pt, got.Plaintext)
	}
	if res[1]["error"] != nil {
		t.Fatalf("node verify_jwt: %v", res[1]["error"])
	}
	if claims, _ := res[1]["claims"].(map[string]any); claims["aud"] != rcv.URL {
		t.Errorf("node read the claims %v", res[1]["claims"])
	}

	rcv.Answer(path, relaytest.Answer{Status: 410})
	send(t, romeo, chat("juliet@"+domain, "c2", "gone?"))
	waitPush(t, rcv, 20*time.Second)
	waitFor(t, 15*time.Second, func() bool {
		out, _ := s.Admin("/disabled?account=juliet@" + domain)
		return strings.Contains(out, `"gone"`) && strings.Contains(out, "registration is gone")
	})
}

func vapidParam(header, name string) string {
	for _, part := range strings.Split(strings.TrimPrefix(header, "vapid "), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), name+"="); ok {
			return v
		}
	}
	return ""
}

// startPush2Relay builds and runs cmd/push2relay as the component
// componentRelayJID, relaying for domain to rcv, until the test ends.
func startPush2Relay(t *testing.T, s *stack.Stack, rcv *relaytest.Receiver, secret, domain string) {
	t.Helper()
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "push2relay")
	build := exec.Command("go", "build", "-o", bin, "./cmd/push2relay")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/push2relay: %v\n%s", err, out)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rcv.Certificate().Raw}), 0o600)
	cfg := filepath.Join(dir, "push2relay.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[component]
jid = %q
address = %q
secret = %q

[relay]
senders = [%q]
allow_networks = ["127.0.0.1"]
ca_file = %q
timeout = "3s"

[log]
level = "debug"
`, componentRelayJID, s.Server.ComponentAddrOf(componentRelayJID), secret, domain, ca)), 0o600)
	var logBuf stack.SyncBuffer
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("push2relay log:\n%s", tail(logBuf.String(), 40))
		}
	})
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(logBuf.String(), "connected to the XMPP server") })
}

// nodeCheck runs profiles/webpush/testdata/node/check.js (npm http_ece and
// node's crypto), installing its packages with npm ci if needed.
func nodeCheck(t *testing.T, reqs []map[string]string) []map[string]any {
	t.Helper()
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "profiles", "webpush", "testdata", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "http_ece")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	in, _ := json.Marshal(reqs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "check.js")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.js: %v", err)
	}
	var res []map[string]any
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(reqs) {
		t.Fatalf("node check.js: %d results for %d requests (%v)", len(res), len(reqs), err)
	}
	return res
}
