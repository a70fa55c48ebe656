package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary run push2d's main instead of the tests,
// so that the process tests run the real push2d (flags, config loading,
// start-up, exit codes) without a separate build.
const runMainEnv = "PUSH2D_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// push2dCommand is push2d with args, as a process.
func push2dCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCheckRefusesPublicAdmin: `push2d -check` refuses a public
// admin.listen with the same message and exit code as start-up.
func TestCheckRefusesPublicAdmin(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:5380", "[::]:5380", ":5380", "192.0.2.1:5380"} {
		p := writeConfig(t, validConfig+"\n[admin]\nlisten = \""+listen+"\"\n")
		var outs [2]string
		for i, args := range [][]string{{"-check", "-config", p}, {"-config", p}} {
			cmd := push2dCommand(t, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("push2d %v with admin.listen %q: %v, stdout %q, stderr %q; want exit 2", args, listen, err, out, stderr.String())
			}
			if strings.Contains(string(out), "configuration ok") {
				t.Errorf("push2d %v says %q", args, out)
			}
			outs[i] = stderr.String()
		}
		if outs[0] != outs[1] || !strings.Contains(outs[0], "admin.listen") || !strings.Contains(outs[0], "loopback") {
			t.Errorf("admin.listen %q: -check says %q, start-up says %q", listen, outs[0], outs[1])
		}
	}
	// A loopback listen passes -check, which notes the missing token.
	out, err := push2dCommand(t, "-check", "-config", writeConfig(t, validConfig)).Output()
	if err != nil || !strings.Contains(string(out), "configuration ok") || !strings.Contains(string(out), "admin.token_file") {
		t.Errorf("-check of a valid config: %q %v", out, err)
	}
}

// TestAdminTokenNeverShown runs push2d (not connected: its server port is
// closed) with an admin token, sends it right, wrong and to the wrong
// Host, and checks that neither the token nor a wrong one appears in an
// answer or in the debug log.
func TestAdminTokenNeverShown(t *testing.T) {
	admin := freeAddr(t)
	tokFile := writeToken(t, testToken, 0o600)
	text := strings.Replace(validConfig, `address = "127.0.0.1:5347"`, `address = "`+freeAddr(t)+`"`, 1)
	text = strings.Replace(text, `dir = "/tmp/x"`, `dir = "`+t.TempDir()+`"`, 1)
	text += "\n[admin]\nlisten = \"" + admin + "\"\ntoken_file = \"" + tokFile + "\"\n\n[log]\nlevel = \"debug\"\n"
	cmd := push2dCommand(t, "-config", writeConfig(t, text))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("push2d exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("push2d's admin interface not up after 20s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	s := &adminServer{addr: admin}
	wrong := strings.ToUpper(testToken)
	var bodies []string
	for _, ar := range []adminRequest{
		{method: "GET", path: "/registrations?account=juliet@example.org", token: testToken},
		{method: "GET", path: "/registrations?account=juliet@example.org", token: wrong},
		{method: "GET", path: "/registrations?account=juliet@example.org", token: testToken, host: "evil.example"},
		{method: "POST", path: "/ping?account=juliet@example.org", token: testToken, contentType: "application/json"},
		{method: "POST", path: "/ping?account=juliet@example.org", token: testToken, contentType: "text/plain"},
		{method: "POST", path: "/ping?account=juliet@example.org", token: wrong, contentType: "application/json"},
		{method: "POST", path: "/ping?account=not-a-jid@@", token: testToken, contentType: "application/json"},
		{method: "GET", path: "/metrics"},
	} {
		r := s.do(t, ar)
		bodies = append(bodies, r.body)
		ok := ar.token == testToken && ar.host == "" && ar.contentType != "text/plain" && !strings.Contains(ar.path, "@@")
		if ar.token == "" {
			ok = true
		}
		if (r.status == http.StatusOK) != ok {
			t.Errorf("%s %s (token right: %v, host %q, %q): %d %q", ar.method, ar.path, ar.token == testToken, ar.host, ar.contentType, r.status, r.body)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("push2d after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("push2d did not stop within 15s of SIGTERM")
	}
	log := logs.String()
	if !strings.Contains(log, "admin: refused a request") {
		t.Errorf("no refusal logged:\n%s", log)
	}
	for _, secret := range []string{testToken, wrong, "s3cret-value"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q:\n%s", secret, log)
		}
		for _, b := range bodies {
			if strings.Contains(b, secret) {
				t.Errorf("an answer holds %q: %q", secret, b)
			}
		}
	}
}
