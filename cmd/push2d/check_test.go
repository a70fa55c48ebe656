package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/push2/push2/internal/prosodytest"
)

// TestCheckConnect runs `push2d check --connect` against a real Prosody,
// each supported version:
// the right settings pass, and each wrong one (secret, nothing listening,
// component name, domain, a second connection) fails with exit status 1
// and a text naming what to fix, never the secret.
func TestCheckConnect(t *testing.T) {
	for _, v := range prosodytest.Versions {
		t.Run(v.Name(), func(t *testing.T) { testCheckConnect(t, v) })
	}
}

func testCheckConnect(t *testing.T, v prosodytest.Version) {
	const secret = "check-secret-value"
	// The bridge on the main host; other.localhost is a host without it.
	srv := prosodytest.MustStart(t, prosodytest.Options{
		Version:         v,
		ComponentSecret: secret,
		PluginPaths:     []string{"../../examples/prosody"},
		ExtraModules:    []string{"push2_bridge"},
		ExtraConfig:     "VirtualHost \"other.localhost\"\n\tmodules_disabled = { \"push2_bridge\"; \"s2s\" }\n",
	})
	config := func(jid, address, secret, domain string) string {
		return writeConfig(t, fmt.Sprintf("[component]\njid = %q\naddress = %q\nsecret = %q\ndomains = [%q]\n[store]\ndir = \"/tmp/x\"\n", jid, address, secret, domain))
	}
	check := func(path string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := runCheck([]string{"--config", path, "--connect"}, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	comp, domain, addr := srv.ComponentDomain(), srv.Domain(), srv.ComponentAddr()

	code, out, errOut := check(config(comp, addr, secret, domain))
	if code != 0 || !strings.Contains(out, "component connection ok") || !strings.Contains(out, "domain "+domain+" ok") || errOut != "" {
		t.Fatalf("right settings: exit %d, stdout %q, stderr %q; want 0, connection and domain ok", code, out, errOut)
	}

	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"wrong secret", config(comp, addr, "not-the-"+secret, domain), []string{"refused the component secret", "component_secret", `Component "` + comp + `"`}},
		{"nothing listening", config(comp, freeAddr(t), secret, domain), []string{"nothing is listening", "component_ports", "before the first VirtualHost"}},
		{"unknown component", config("push2.other.example", addr, secret, domain), []string{"has no external component push2.other.example", `Component "push2.other.example"`}},
		{"wrong domain", config(comp, addr, secret, "example.net"), []string{"domain example.net (component.domains) is not a VirtualHost"}},
		{"no bridge on the domain", config(comp, addr, secret, "other.localhost"), []string{"mod_push2_bridge is not loaded on it", `VirtualHost "other.localhost"`}},
	} {
		code, out, errOut := check(tc.path)
		if code != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1", tc.name, code, out, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errOut, w)
			}
		}
		if strings.Contains(out+errOut, secret) {
			t.Errorf("%s: the secret is in the output: %q %q", tc.name, out, errOut)
		}
	}

	// The Prosody side says the same in its log: push2d's JID and the
	// triggers the host's modules give.
	want := "push2 bridge loaded: push2d component " + comp + "; triggers: offline (mod_offline), archived (mod_mam), hibernated, ack-delayed (mod_smacks), groupchat; not available: none"
	if log := srv.LogTail(1000); !strings.Contains(log, want) {
		t.Errorf("Prosody's log lacks %q", want)
	}

	// push2d already connected: the secret is right, and check says so.
	sess, err := srv.DialComponent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if code, out, errOut := check(config(comp, addr, secret, domain)); code != 1 || !strings.Contains(errOut, "accepted the secret") || !strings.Contains(errOut, "already logged in") {
		t.Errorf("second connection: exit %d, stdout %q, stderr %q; want 1 and the conflict explained", code, out, errOut)
	}
}

// TestCheckCommandAndAlias: `push2d check --config FILE` and the older
// `push2d -check -config FILE` are the same command, as processes: same
// output and exit status, for a good and a bad file.
func TestCheckCommandAndAlias(t *testing.T) {
	good := writeConfig(t, validConfig)
	bad := writeConfig(t, validConfig+"\n[engine]\nworkers = 0\n")
	for _, tc := range []struct {
		path string
		code int
		want string
	}{{good, 0, "push2d: configuration ok (" + good + ")"}, {bad, 2, "engine.workers must be at least 1"}} {
		var outs []string
		for _, args := range [][]string{{"check", "--config", tc.path}, {"-check", "-config", tc.path}} {
			out, err := push2dCommand(t, args...).CombinedOutput()
			code := 0
			if err != nil {
				ee, ok := err.(*exec.ExitError)
				if !ok {
					t.Fatal(err)
				}
				code = ee.ExitCode()
			}
			if code != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("push2d %v: exit %d %q, want %d with %q", args, code, out, tc.code, tc.want)
			}
			outs = append(outs, string(out))
		}
		if outs[0] != outs[1] {
			t.Errorf("check and -check differ: %q vs %q", outs[0], outs[1])
		}
	}
	if out, err := push2dCommand(t, "check", "--connect", "extra").CombinedOutput(); err == nil || !strings.Contains(string(out), `unexpected argument "extra"`) {
		t.Errorf("push2d check with an extra argument: %v %q", err, out)
	}
}
