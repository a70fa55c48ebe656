package main

import (
	"context"
	"encoding/xml"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/push2/push2/cmd/push2d/internal/bridgeproto"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles/xep0357"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/profiles"
)

const validConfig = `
[component]
jid = "push2.example.org"
address = "127.0.0.1:5347"
secret = "s3cret-value"
domains = ["example.org"]
[store]
dir = "/tmp/x"
`

func writeConfig(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "push2d.toml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Engine.MaxRegistrations != 5 || cfg.Engine.NotificationLimit != 4096 || cfg.Admin.Listen != "127.0.0.1:5380" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	cfg, err = loadConfig(writeConfig(t, strings.Replace(validConfig, `secret = "s3cret-value"`, `secret_file = "`+secretFile+`"`, 1)))
	if err != nil || cfg.Component.Secret != "from-file" {
		t.Errorf("secret_file: %q %v", cfg.Component.Secret, err)
	}

	for _, tc := range []struct{ name, edit, want string }{
		{"unknown setting", "\n[engine]\nmax_devices = 3\n", "unknown setting"},
		{"no secret", `secret = "s3cret-value"` + "\x00", "component.secret"},
		{"bad jid", `jid = "push2.example.org"` + "\x00" + `jid = "user@push2.example.org"`, "component.jid"},
		{"no domains", `domains = ["example.org"]` + "\x00", "component.domains"},
		{"bad domain", `domains = ["example.org"]` + "\x00" + `domains = ["a@b"]`, "component.domains[0]"},
		{"limit too large", "\n[engine]\nnotification_limit = 9000\n", "notification_limit"},
		{"bad duration", "\n[engine]\nmax_grace = \"forever\"\n", "duration"},
		{"bad level", "\n[log]\nlevel = \"loud\"\n", "log.level"},
		{"both secrets", `secret = "s3cret-value"` + "\x00" + `secret = "a"` + "\n" + `secret_file = "/x"`, "not both"},
		{"stack too small", "\n[plugins]\nstack_limit_kib = 4\n", "stack_limit_kib"},
		{"window too large", "\n[plugins]\nquarantine_window = 100\n", "quarantine_window"},
		{"rate above one", "\n[plugins]\nquarantine_rate = 1.5\n", "quarantine_rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := validConfig
			if old, repl, ok := strings.Cut(tc.edit, "\x00"); ok {
				text = strings.Replace(text, old, repl, 1)
			} else {
				text += tc.edit
			}
			_, err := loadConfig(writeConfig(t, text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("the secret appears in the error: %v", err)
			}
		})
	}
}

// TestConfigXEP0357: the [xep0357] section, its old name [legacy] as an
// alias (defaults kept for what it does not set), both at once refused, and
// what each means for the profile set.
func TestConfigXEP0357(t *testing.T) {
	for _, tc := range []struct {
		name, text           string
		enabled, body, sendr bool
		important            string
	}{
		{"default", "", true, false, false, "New Message!"},
		{"xep0357", "\n[xep0357]\nwith_body = true\nimportant_body = \"\"\n", true, true, false, ""},
		{"legacy alias", "\n[legacy]\nwith_body = true\nwith_sender = true\n", true, true, true, "New Message!"},
		{"legacy alias off", "\n[legacy]\nenabled = false\n", false, false, false, "New Message!"},
		{"xep0357 off", "\n[xep0357]\nenabled = false\n", false, false, false, "New Message!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(writeConfig(t, validConfig+tc.text))
			if err != nil {
				t.Fatal(err)
			}
			x := cfg.XEP0357
			if x.Enabled != tc.enabled || x.WithBody != tc.body || x.WithSender != tc.sendr || x.ImportantBody != tc.important {
				t.Fatalf("xep0357 = %+v", x)
			}
			o := cfg.profileOptions().XEP0357
			if (o != nil) != tc.enabled {
				t.Fatalf("profile options: %+v", o)
			}
			if o != nil && (o.WithBody != tc.body || o.WithSender != tc.sendr || o.ImportantBody == nil || *o.ImportantBody != tc.important) {
				t.Errorf("profile options: %+v", o)
			}
		})
	}
	_, err := loadConfig(writeConfig(t, validConfig+"\n[legacy]\nwith_body = true\n[xep0357]\nwith_body = false\n"))
	if err == nil || !strings.Contains(err.Error(), "[legacy] is the old name of [xep0357]") {
		t.Errorf("both sections: %v", err)
	}
	if _, err := loadConfig(writeConfig(t, validConfig+"\n[xep0357]\nwith_bodies = true\n")); err == nil || !strings.Contains(err.Error(), "xep0357.with_bodies") {
		t.Errorf("unknown xep0357 setting: %v", err)
	}
}

// TestBridgeXEP0357: an XEP-0357 enable and disable through the bridge
// protocol reach the xep0357 profile through the engine's one hook, as the
// config builds it; with [xep0357] off they are refused.
func TestBridgeXEP0357(t *testing.T) {
	const enable = `<enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="res"><enable xmlns="urn:xmpp:push:0" jid="push-5.client.example" node="n1"/></enable>`
	d := testDaemonConfig(t, validConfig+"\n[legacy]\nwith_body = true\n")
	res, err := d.bridge.Enable(t.Context(), mustEnable(t, enable))
	if err != nil || res.ID != xep0357.ID("push-5.client.example", "n1") {
		t.Fatalf("enable: %v %v", res, err)
	}
	if err := d.bridge.Disable(t.Context(), mustDisable(t, `<disable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="res"><disable xmlns="urn:xmpp:push:0" jid="push-5.client.example"/></disable>`)); err != nil {
		t.Fatal(err)
	}
	if regs, _ := d.eng.Registrations(t.Context(), "juliet@example.org"); len(regs) != 0 {
		t.Errorf("left after the XEP-0357 disable: %+v", regs)
	}
	off := testDaemonConfig(t, validConfig+"\n[xep0357]\nenabled = false\n")
	if _, err := off.bridge.Enable(t.Context(), mustEnable(t, enable)); err == nil || !strings.Contains(err.Error(), "feature-not-implemented") {
		t.Errorf("enable with [xep0357] off: %v", err)
	}
}

func mustEnable(t *testing.T, s string) *bridgeproto.Enable {
	t.Helper()
	req, err := bridgeproto.ParseEnable(stanza.MustParse(s))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func mustDisable(t *testing.T, s string) *bridgeproto.Disable {
	t.Helper()
	req, err := bridgeproto.ParseDisable(stanza.MustParse(s))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestAdminListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0", "example.org:80"} {
		if ln, err := listenAdmin(addr); err == nil {
			ln.Close()
			t.Errorf("listenAdmin(%q) accepted a non-loopback address", addr)
		}
	}
	ln, err := listenAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func testDaemon(t *testing.T) *daemon {
	t.Helper()
	return testDaemonConfig(t, validConfig)
}

// testDaemonConfig is a daemon on a fresh store, configured by text, not
// connected to any server.
func testDaemonConfig(t *testing.T, text string) *daemon {
	t.Helper()
	d, _ := testDaemonStore(t, text)
	return d
}

// testDaemonStore is testDaemonConfig, with the store for the test to
// write to directly.
func testDaemonStore(t *testing.T, text string) (*daemon, *pebblestore.Store) {
	t.Helper()
	cfg, err := loadConfig(writeConfig(t, text))
	if err != nil {
		t.Fatal(err)
	}
	store, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.BuiltinWith(cfg.profileOptions())); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(store, reg, engine.Config{})
	return newDaemon(cfg, eng, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics()), store
}

// TestBridgeWiring: the daemon serves the bridge protocol
// (bridgeproto's tests cover it) with its engine, configured domains and
// metrics.
func TestBridgeWiring(t *testing.T) {
	d := testDaemon(t)
	enable := `<enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="r"><enable xmlns="urn:xmpp:push2:0"><service>p.example</service><client>c</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable></enable>`
	for _, from := range []string{"evil.example", "example.org"} {
		r := xml.NewDecoder(strings.NewReader(`<iq xmlns="jabber:client" type="set" id="1" from="` + from + `">` + enable + `</iq>`))
		tok, _ := r.Token()
		start := tok.(xml.StartElement)
		if err := d.bridge.HandleXML(r, &start); err != nil {
			t.Fatal(err)
		}
	}
	d.bridge.Wait()
	if got := testutil.ToFloat64(d.metrics.refused); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	if got := testutil.ToFloat64(d.metrics.enables.WithLabelValues("ok")); got != 1 {
		t.Errorf("enables{ok} = %v, want 1", got)
	}
	if regs, err := d.eng.Registrations(context.Background(), "juliet@example.org"); len(regs) != 1 {
		t.Errorf("registrations %v %v", regs, err)
	}
}

// TestExampleConfig: the documented example parses, with every setting
// known.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../examples/push2d.toml")
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("x"), 0o600)
	text := strings.Replace(string(b), `"/etc/push2/component.secret"`, strconv.Quote(secret), 1)
	text = strings.ReplaceAll(text, "/etc/push2/admin.token", writeToken(t, testToken, 0o600))
	cfg, err := loadConfig(writeConfig(t, text))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Admin.Token.configured() || cfg.Admin.PingBurst != 3 {
		t.Errorf("example config's admin: %+v", cfg.Admin)
	}
	if cfg.Delivery.MaxErrors != 16 || cfg.Component.JID != "push2.example.org" {
		t.Errorf("example config: %+v", cfg)
	}
}
