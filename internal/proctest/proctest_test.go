package proctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A run's CurrentLog holds only what it logged; Stop escalates to SIGKILL
// when the signal is ignored; a second Start while running is refused.
func TestProcess(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "server.log")
	if err := os.WriteFile(logPath, []byte("line of an earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Process{Name: "sh", LogPath: logPath, StopTimeout: 200 * time.Millisecond}
	start := func() <-chan struct{} {
		t.Helper()
		// Ignores SIGTERM: only SIGKILL stops it.
		cmd := exec.Command("sh", "-c", `trap '' TERM; echo ready >> "$0"; while :; do sleep 0.05; done`, logPath)
		done, err := p.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return done
	}
	done := start()
	if _, err := p.Start(exec.Command("true")); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Start: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.CurrentLog(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("current log %q", p.CurrentLog())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if log := p.CurrentLog(); strings.Contains(log, "earlier run") {
		t.Fatalf("current log has the earlier run: %q", log)
	}
	if !p.Running() || p.PID() == 0 {
		t.Fatalf("running %v pid %d", p.Running(), p.PID())
	}
	err := p.Stop(syscall.SIGTERM)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop of a process ignoring SIGTERM: %v", err)
	}
	select {
	case <-done:
	default:
		t.Fatal("done not closed after Stop")
	}
	if p.Running() || p.PID() != 0 || p.ExitErr() == nil {
		t.Fatalf("after Stop: running %v pid %d exit %v", p.Running(), p.PID(), p.ExitErr())
	}
	if err := p.Stop(syscall.SIGTERM); err != nil {
		t.Fatalf("Stop of a stopped process: %v", err)
	}
	if tail := p.LogTail(1); tail != "ready" {
		t.Fatalf("LogTail(1) = %q", tail)
	}
	start() // started again after Stop
	if err := p.Stop(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v", ports)
		}
		seen[p] = true
	}
	if _, err := FreePorts(0); err == nil {
		t.Fatal("FreePorts(0) succeeded")
	}
}
