package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/push2/push2/internal/stack"
)

// TestProbe: `push2 probe`, the operator's check of an installation (README
// "Running it for real"), pushes through the real Prosody, bridge and
// push2d, and leaves no registration behind; it fails, saying why, with a
// wrong password and with push2d away.
func TestProbe(t *testing.T) { eachServer(t, testProbe) }

func testProbe(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	dir := t.TempDir()
	bin, err := stack.BuildCommand(dir, "push2")
	if err != nil {
		t.Fatal(err)
	}
	pw := func(local, password string) string {
		if err := s.Server.CreateUser(local, password); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, local+".pw")
		if err := os.WriteFile(f, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	devPW, svcPW := pw("probe-device", "dev-secret"), pw("probe-service", "svc-secret")
	probe := func(devicePW string) (string, error) {
		cmd := exec.Command(bin, "probe", "-server", s.Server.C2SAddr(), "-plain", "-timeout", "20s",
			"-device", "probe-device@"+domain, "-device-password-file", devicePW,
			"-service", "probe-service@"+domain, "-service-password-file", svcPW)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := probe(devPW)
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	for _, want := range []string{"enabled pushes to probe-service@" + domain, "push arrived after", "<notification xmlns=\"urn:xmpp:push2:0\">", "disabled the registration again", "ok: the push went through"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dev-secret") || strings.Contains(out, "svc-secret") {
		t.Errorf("probe printed a password:\n%s", out)
	}
	if regs, err := s.Admin("/registrations?account=probe-device@" + domain); err != nil || strings.Contains(regs, `"id"`) {
		t.Errorf("registrations after the probe: %s (%v), want none", regs, err)
	}

	wrong := filepath.Join(dir, "wrong.pw")
	os.WriteFile(wrong, []byte("not-it\n"), 0o600)
	if out, err := probe(wrong); err == nil || !strings.Contains(out, "device account") {
		t.Errorf("probe with a wrong password: %v\n%s", err, out)
	}

	if err := s.StopPush2d(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	out, err = probe(devPW)
	if err == nil || !strings.Contains(out, "service-unavailable") || !strings.Contains(out, "push2d check --connect") {
		t.Errorf("probe with push2d stopped: %v\n%s", err, out)
	}
}
