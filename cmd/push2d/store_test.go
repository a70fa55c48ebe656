package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
)

// TestRefusesExposedStore: push2d does not start on a store other users
// can read (it holds the registrations' keys) and says how to fix it.
func TestRefusesExposedStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(writeConfig(t, strings.Replace(validConfig, `dir = "/tmp/x"`, `dir = "`+dir+`"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), cfg)
	if !errors.Is(err, pebblestore.ErrExposed) || !strings.Contains(err.Error(), "chmod -R go-rwx "+dir) {
		t.Fatalf("run on a 0755 store: %v; want a refusal naming chmod -R go-rwx %s", err, dir)
	}
}

// damagedStore is a store dir with 20 registrations, closed cleanly, then
// damaged by damage, and a push2d configuration using it (not connected:
// its server port is closed).
func damagedStore(t *testing.T, damage func(dir string)) (dir, config string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r := engine.StoredRegistration{Account: "juliet@example.org", ID: fmt.Sprintf("device-%02d", i), Created: time.Now(),
			Enable: `<enable xmlns="urn:xmpp:push2:0"><service>push@push.example</service><client>` + strings.Repeat("t", 100) + `</client></enable>`}
		if _, err := s.PutRegistration(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damage(dir)
	text := strings.Replace(validConfig, `address = "127.0.0.1:5347"`, `address = "`+freeAddr(t)+`"`, 1)
	text = strings.Replace(text, `dir = "/tmp/x"`, `dir = "`+dir+`"`, 1)
	text += "\n[admin]\nlisten = \"" + freeAddr(t) + "\"\n"
	return dir, writeConfig(t, text)
}

func truncateWAL(t *testing.T) func(string) {
	return func(dir string) {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		if len(logs) != 1 {
			t.Fatalf("WALs: %v", logs)
		}
		fi, err := os.Stat(logs[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(logs[0], fi.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
}

func removeCurrent(t *testing.T) func(string) {
	return func(dir string) {
		if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRefusesDamagedStore: push2d does not start on a damaged store (a WAL
// truncated after a clean stop lost registrations; a missing CURRENT made
// Pebble panic): one line on standard error saying what is wrong and what
// to run, exit code 1, no panic trace.
func TestRefusesDamagedStore(t *testing.T) {
	for name, tc := range map[string]struct {
		damage func(string)
		want   []string
	}{
		"truncated WAL":   {truncateWAL(t), []string{"truncated", "at the last clean shutdown: 20 registrations", "readable: 10 registrations", "push2d --repair"}},
		"missing CURRENT": {removeCurrent(t), []string{"CURRENT", "missing", "push2d --repair"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir, config := damagedStore(t, tc.damage)
			cmd := push2dCommand(t, "-config", config)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("push2d on a damaged store: %v; want exit 1\n%s", err, stderr.String())
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 || strings.Contains(out, "panic") || strings.Contains(out, "goroutine") {
				t.Errorf("want one line, no panic:\n%s", out)
			}
			for _, w := range append(tc.want, "push2d: store "+dir+" is damaged") {
				if !strings.Contains(out, w) {
					t.Errorf("refusal does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

// runUntil runs push2d with args until its log holds want, then stops it
// with SIGTERM and returns the log.
func runUntil(t *testing.T, want string, args ...string) string {
	t.Helper()
	cmd := push2dCommand(t, args...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(logs.String(), want) {
		select {
		case err := <-exited:
			t.Fatalf("push2d %v exited: %v\n%s", args, err, logs.String())
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("push2d %v: no %q within 20s:\n%s", args, want, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("push2d after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("push2d did not stop within 15s of SIGTERM")
	}
	return logs.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRepairDamagedStore: push2d --repair starts on a damaged store,
// logs what it did and what was lost (counts before and after), and the
// next start needs no repair.
func TestRepairDamagedStore(t *testing.T) {
	for name, tc := range map[string]struct {
		damage func(string)
		want   []string
	}{
		"truncated WAL":   {truncateWAL(t), []string{"kept=\"10 registrations", "at_last_shutdown=\"20 registrations"}},
		"missing CURRENT": {removeCurrent(t), []string{"wrote CURRENT naming MANIFEST-", "kept=\"20 registrations"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, config := damagedStore(t, tc.damage)
			log := runUntil(t, "push2d starting", "-repair", "-config", config)
			for _, w := range append(tc.want, "store repaired") {
				if !strings.Contains(log, w) {
					t.Errorf("repair log lacks %q:\n%s", w, log)
				}
			}
			log = runUntil(t, "push2d starting", "-config", config)
			if strings.Contains(log, "store repaired") || !strings.Contains(log, "store opened") || !strings.Contains(log, "after=\"a clean shutdown\"") {
				t.Errorf("start after the repair:\n%s", log)
			}
		})
	}
}

// TestStoreOpenedLogged: push2d logs what it found in the store at
// start-up.
func TestStoreOpenedLogged(t *testing.T) {
	_, config := damagedStore(t, func(string) {})
	log := runUntil(t, "push2d starting", "-config", config)
	if !strings.Contains(log, "msg=\"store opened\"") || !strings.Contains(log, "registrations=20 outbox=0 dedupe_marks=0") {
		t.Errorf("start-up log:\n%s", log)
	}
}

// TestStoreFailed: a fatal store error ends push2d with one log line and
// exit code 1.
func TestStoreFailed(t *testing.T) {
	var logs bytes.Buffer
	code := -1
	storeFailed(slog.New(slog.NewTextHandler(&logs, nil)), "/var/lib/push2", errors.New("pebble: fatal commit error: write 000004.log: no space left on device"), func(c int) { code = c })
	out := logs.String()
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "no space left on device") || !strings.Contains(out, "push2d stops") {
		t.Errorf("exit %d, log %q", code, out)
	}
}
