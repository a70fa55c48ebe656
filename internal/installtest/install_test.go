package installtest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/push2/push2/internal/prosodytest"
)

// root is the repository, where the Makefile is.
const root = "../.."

// makeInstall runs `make install` with vars (DESTDIR=…, PREFIX=…), the
// binaries built into bin, and returns its output.
func makeInstall(t *testing.T, bin string, vars ...string) string {
	t.Helper()
	args := append([]string{"-C", root, "install", "BIN=" + bin}, vars...)
	out, err := exec.Command("make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// wantFile fails t unless path is a regular file with mode perm, and
// returns its content.
func wantFile(t *testing.T, path string, perm os.FileMode) []byte {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("make install did not write %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), perm)
	}
	b, _ := os.ReadFile(path)
	return b
}

// TestMakeInstall: `make install DESTDIR=…` puts the binaries, the bridge
// module, the example configs, the systemd units of push2d and push2relay
// and their sysusers file in the documented places (docs/push2d.md
// "Installing", docs/relay.md); the installed push2d and push2relay accept
// their installed configs once the secret files exist; a second install
// keeps an edited config; PREFIX and SYSCONFDIR move everything, ExecStart
// included.
func TestMakeInstall(t *testing.T) {
	dest, bin := t.TempDir(), t.TempDir()
	makeInstall(t, bin, "DESTDIR="+dest)

	push2d := filepath.Join(dest, "usr/local/bin/push2d")
	wantFile(t, push2d, 0o755)
	wantFile(t, filepath.Join(dest, "usr/local/bin/push2"), 0o755)
	lua := wantFile(t, filepath.Join(dest, "usr/local/lib/prosody/modules/mod_push2_bridge/mod_push2_bridge.lua"), 0o644)
	if src, _ := os.ReadFile(filepath.Join(root, "examples/prosody/mod_push2_bridge/mod_push2_bridge.lua")); !bytes.Equal(lua, src) {
		t.Error("the installed bridge module differs from examples/prosody")
	}
	cfgPath := filepath.Join(dest, "etc/push2/push2d.toml")
	cfg := wantFile(t, cfgPath, 0o644)
	if src, _ := os.ReadFile(filepath.Join(root, "examples/push2d.toml")); !bytes.Equal(cfg, src) {
		t.Error("the installed push2d.toml differs from examples/push2d.toml")
	}
	if users := wantFile(t, filepath.Join(dest, "usr/local/lib/sysusers.d/push2.conf"), 0o644); !regexpLine(users, "u push2 - ") {
		t.Errorf("push2.conf does not create the user push2:\n%s", users)
	}
	if sysusers, err := exec.LookPath("systemd-sysusers"); err == nil {
		// The file creates the user in DESTDIR's /etc/passwd, as the
		// README's `systemd-sysusers` does in the real one.
		os.MkdirAll(filepath.Join(dest, "etc"), 0o755)
		if out, err := exec.Command(sysusers, "--root="+dest).CombinedOutput(); err != nil {
			t.Errorf("systemd-sysusers --root: %v\n%s", err, out)
		}
		if pw, _ := os.ReadFile(filepath.Join(dest, "etc/passwd")); !regexpLine(pw, "push2:x:") || !bytes.Contains(pw, []byte(":/var/lib/push2:/usr/sbin/nologin\n")) {
			t.Errorf("systemd-sysusers made no push2 user with home /var/lib/push2 and no shell:\n%s", pw)
		}
	}
	unitPath := filepath.Join(dest, "usr/local/lib/systemd/system/push2d.service")
	unit := parseUnit(t, wantFile(t, unitPath, 0o644))
	checkUnit(t, unit, "/usr/local/bin/push2d --config /etc/push2/push2d.toml", push2dUnit)
	verifyUnit(t, unitPath, dest)
	relayUnitPath := filepath.Join(dest, "usr/local/lib/systemd/system/push2relay.service")
	checkUnit(t, parseUnit(t, wantFile(t, relayUnitPath, 0o644)), "/usr/local/bin/push2relay -config /etc/push2/push2relay.toml", relayUnit)
	verifyUnit(t, relayUnitPath, dest)

	// The installed binary reads the installed config: only the secret
	// files the example names are missing.
	check := func(path string) (int, string) {
		cmd := exec.Command(push2d, "check", "--config", path)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := check(cfgPath); code != 2 || !strings.Contains(out, "component.secret_file") || strings.Contains(out, "unknown setting") {
		t.Errorf("push2d check on the installed config: exit %d %q, want 2 naming component.secret_file", code, out)
	}
	etc := filepath.Join(dest, "etc/push2")
	os.WriteFile(filepath.Join(etc, "component.secret"), []byte("a-component-secret\n"), 0o600)
	os.WriteFile(filepath.Join(etc, "admin.token"), []byte("dGVzdC10b2tlbi1ub3QtZm9yLXByb2R1Y3Rpb24K\n"), 0o600)
	local := filepath.Join(t.TempDir(), "push2d.toml")
	os.WriteFile(local, bytes.ReplaceAll(cfg, []byte("/etc/push2/"), []byte(etc+"/")), 0o600)
	if code, out := check(local); code != 0 || !strings.Contains(out, "configuration ok") {
		t.Errorf("push2d check with the secret files in place: exit %d %q", code, out)
	}

	// The installed push2relay reads its installed config: only the
	// secret file is missing; with it, the config is usable.
	push2relay := filepath.Join(dest, "usr/local/bin/push2relay")
	wantFile(t, push2relay, 0o755)
	relayCfgPath := filepath.Join(etc, "push2relay.toml")
	relayCfg := wantFile(t, relayCfgPath, 0o644)
	if src, _ := os.ReadFile(filepath.Join(root, "examples/push2relay.toml")); !bytes.Equal(relayCfg, src) {
		t.Error("the installed push2relay.toml differs from examples/push2relay.toml")
	}
	relayCheck := func(path string) (int, string) {
		out, err := exec.Command(push2relay, "check", "-config", path).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := relayCheck(relayCfgPath); code != 2 || !strings.Contains(out, "component.secret_file") || strings.Contains(out, "unknown setting") {
		t.Errorf("push2relay check on the installed config: exit %d %q, want 2 naming component.secret_file", code, out)
	}
	os.WriteFile(filepath.Join(etc, "relay.secret"), []byte("a-relay-secret\n"), 0o600)
	relayLocal := filepath.Join(t.TempDir(), "push2relay.toml")
	os.WriteFile(relayLocal, bytes.ReplaceAll(relayCfg, []byte("/etc/push2/"), []byte(etc+"/")), 0o600)
	if code, out := relayCheck(relayLocal); code != 0 || !strings.Contains(out, "configuration ok") || strings.Contains(out, "a-relay-secret") {
		t.Errorf("push2relay check with the secret file in place: exit %d %q", code, out)
	}

	// An existing config is never replaced.
	edited := append(cfg, []byte("\n# edited by the operator\n")...)
	os.WriteFile(cfgPath, edited, 0o640)
	if out := makeInstall(t, bin, "DESTDIR="+dest); !strings.Contains(out, "push2d.toml exists: kept") {
		t.Errorf("second make install did not say it kept the config:\n%s", out)
	}
	if b, _ := os.ReadFile(cfgPath); !bytes.Equal(b, edited) {
		t.Error("a second make install replaced the operator's push2d.toml")
	}
	if b, _ := os.ReadFile(relayCfgPath); !bytes.Equal(b, relayCfg) {
		t.Error("a second make install changed push2relay.toml")
	}

	// Another prefix and config directory: everything follows.
	opt := t.TempDir()
	makeInstall(t, bin, "DESTDIR="+opt, "PREFIX=/opt/push2", "SYSCONFDIR=/opt/push2/etc")
	wantFile(t, filepath.Join(opt, "opt/push2/bin/push2d"), 0o755)
	wantFile(t, filepath.Join(opt, "opt/push2/lib/prosody/modules/mod_push2_bridge/mod_push2_bridge.lua"), 0o644)
	if b := wantFile(t, filepath.Join(opt, "opt/push2/etc/push2/push2d.toml"), 0o644); !bytes.Contains(b, []byte(`"/opt/push2/etc/push2/component.secret"`)) {
		t.Errorf("the config under SYSCONFDIR does not name its secret file there:\n%s", b)
	}
	optUnit := filepath.Join(opt, "opt/push2/lib/systemd/system/push2d.service")
	checkUnit(t, parseUnit(t, wantFile(t, optUnit, 0o644)), "/opt/push2/bin/push2d --config /opt/push2/etc/push2/push2d.toml", push2dUnit)
	verifyUnit(t, optUnit, opt)
	if b := wantFile(t, filepath.Join(opt, "opt/push2/etc/push2/push2relay.toml"), 0o644); !bytes.Contains(b, []byte(`"/opt/push2/etc/push2/relay.secret"`)) {
		t.Errorf("push2relay.toml under SYSCONFDIR does not name its secret file there:\n%s", b)
	}
	optRelayUnit := filepath.Join(opt, "opt/push2/lib/systemd/system/push2relay.service")
	checkUnit(t, parseUnit(t, wantFile(t, optRelayUnit, 0o644)), "/opt/push2/bin/push2relay -config /opt/push2/etc/push2/push2relay.toml", relayUnit)
	verifyUnit(t, optRelayUnit, opt)
}

func regexpLine(b []byte, prefix string) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// unitFile is a parsed unit: section → key → values, in order (a key may
// repeat, like SystemCallFilter).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, b []byte) unitFile {
	t.Helper()
	u := unitFile{}
	sec := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			sec = line[1 : len(line)-1]
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("unit line %d %q: not KEY=VALUE in a section", n, line)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	return u
}

// knownKeys are the directives the unit may use, by section: a misspelt
// key (which systemd ignores with a warning) fails here even where
// systemd-analyze is not installed.
var knownKeys = map[string][]string{
	"Unit": {"Description", "After", "Wants"},
	"Service": {"Type", "User", "Group", "ExecStart", "Restart", "RestartSec", "KillSignal", "TimeoutStopSec",
		"StateDirectory", "StateDirectoryMode", "ConfigurationDirectory", "ConfigurationDirectoryMode", "UMask",
		"NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateMounts", "PrivateUsers",
		"PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
		"ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces",
		"RestrictRealtime", "RestrictSUIDSGID", "RemoveIPC", "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber"},
	"Install": {"WantedBy"},
}

// What each unit must set besides the hardening both share: push2d's store
// directory; push2relay keeps no state and, having no WebAssembly, may
// forbid executable memory.
var (
	push2dUnit = map[string]string{"StateDirectory": "push2", "StateDirectoryMode": "0700"}
	relayUnit  = map[string]string{"MemoryDenyWriteExecute": "yes", "StateDirectory": ""}
)

// checkUnit checks the unit's sections and keys, the user and directories
// the daemon needs, the hardening docs/push2d.md promises, ExecStart, and
// the unit's own settings in extra (an empty value: the key must be absent).
func checkUnit(t *testing.T, u unitFile, execStart string, extra map[string]string) {
	t.Helper()
	for sec, keys := range u {
		known, ok := knownKeys[sec]
		if !ok {
			t.Errorf("unit: unknown section [%s]", sec)
		}
		for k := range keys {
			if !slices.Contains(known, k) {
				t.Errorf("unit: unknown key %s in [%s]", k, sec)
			}
		}
	}
	want := map[string]string{
		"ExecStart": execStart, "User": "push2", "Group": "push2",
		"ConfigurationDirectory": "push2", "UMask": "0077",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"Restart": "on-failure",
	}
	for k, v := range want {
		if got := u["Service"][k]; len(got) != 1 || got[0] != v {
			t.Errorf("unit: [Service] %s = %q, want %q", k, got, v)
		}
	}
	for k, v := range extra {
		if got := u["Service"][k]; v == "" && len(got) != 0 {
			t.Errorf("unit: [Service] %s = %q, want none", k, got)
		} else if v != "" && (len(got) != 1 || got[0] != v) {
			t.Errorf("unit: [Service] %s = %q, want %q", k, got, v)
		}
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("unit: WantedBy = %q", got)
	}
}

// verifyUnit runs systemd-analyze on the unit installed under dest, when
// the machine has it: `verify` must pass without a single warning, and
// `security --offline` must rate the exposure at most 1.5 (of 10). verify
// checks that ExecStart's program exists, so it runs on a copy whose
// ExecStart points into dest (checkUnit has checked the real one).
func verifyUnit(t *testing.T, unitPath, dest string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed: the unit's keys were checked against knownKeys only")
		return
	}
	b, _ := os.ReadFile(unitPath)
	u := parseUnit(t, b)
	prog, _, _ := strings.Cut(u["Service"]["ExecStart"][0], " ")
	if _, err := os.Stat(filepath.Join(dest, prog)); err != nil {
		t.Fatalf("ExecStart's program is not installed: %v", err)
	}
	copyPath := filepath.Join(t.TempDir(), filepath.Base(unitPath))
	os.WriteFile(copyPath, bytes.Replace(b, []byte("ExecStart="+prog), []byte("ExecStart="+filepath.Join(dest, prog)), 1), 0o644)
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=15", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 1.5 (%v):\n%s", err, out)
	}
	if i := bytes.Index(out, []byte("Overall exposure level")); i >= 0 {
		t.Logf("systemd-analyze security: %s", bytes.TrimSpace(out[i:]))
	}
}

// TestProsodySnippetChecks: `prosodyctl check config` of each supported
// Prosody, on the shipped config snippet (with a data path of its own),
// finds no option in the wrong section: component_ports and
// component_interfaces are read only in the global section, and the
// snippet once had them below a VirtualHost, where Prosody ignored them
// (both versions' checks said so).
func TestProsodySnippetChecks(t *testing.T) {
	snippet, err := os.ReadFile(filepath.Join(root, "examples/prosody/prosody.cfg.lua.snippet"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range prosodytest.Versions {
		t.Run(v.Name(), func(t *testing.T) {
			prosodyctl := filepath.Join(prosodytest.Prosody13Root(), "usr/bin/prosodyctl")
			if v == prosodytest.Prosody012 {
				prosodyctl = "/usr/bin/prosodyctl"
			}
			if _, err := os.Stat(prosodyctl); err != nil {
				t.Fatalf("%s is not installed (scripts/install-deps.sh installs it): %v", v, err)
			}
			// prosodyctl reads the config as the prosody user: the
			// directory and the file must be readable by others (the
			// test's TempDir is not).
			dir, err := os.MkdirTemp("", "push2-snippet-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			os.Chmod(dir, 0o755)
			cfg := filepath.Join(dir, "prosody.cfg.lua")
			// A global modules_enabled, as every real config has (Prosody
			// 13's check fails on a config without one).
			head := "modules_enabled = { \"disco\" }\ndata_path = \"" + dir + "\"\npidfile = \"" + dir + "/prosody.pid\"\ncertificates = \"" + dir + "\"\n"
			if err := os.WriteFile(cfg, append([]byte(head), snippet...), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(cfg, 0o644)
			// Exit status 2 is expected: a snippet alone is not a whole
			// config (no TLS); what it must not have is an option in the
			// wrong section.
			out, _ := exec.Command(prosodyctl, "--config", cfg, "check", "config").CombinedOutput()
			if !strings.Contains(string(out), "The following configuration files have been loaded:\n      -  "+cfg) || !strings.Contains(string(out), "Done.") {
				t.Fatalf("prosodyctl did not check %s:\n%s", cfg, out)
			}
			for _, bad := range []string{"should be\n    in the global section", "You need to move", "Unknown", "syntax error", "stack traceback"} {
				if strings.Contains(string(out), bad) {
					t.Errorf("prosodyctl check config on the snippet says %q:\n%s", bad, out)
				}
			}
		})
	}
}
