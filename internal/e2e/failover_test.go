package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/internal/pgtest"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// TestFailover: two push2d on one PostgreSQL database and one Prosody.
// Prosody takes one connection per component JID, so the second push2d
// stands by, retrying. In the middle of a burst of messages the active one
// is SIGKILLed; the standby takes the component connection, the bridge
// replays the events it had not seen acknowledged, and every message gets
// exactly its push: the distinct notifications are counted (each message
// is one notification; dedupe marks in the shared database keep a
// replayed event from making a second), duplicates (a notification sent
// twice, the at-least-once window around the kill) reported.
func TestFailover(t *testing.T) { eachProsody(t, testFailover) }

func testFailover(t *testing.T, p prosodytest.Version) {
	pg := pgtest.MustStart(t, pgtest.Options{})
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(pg.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, p, stack.Options{StoreConfig: "kind = \"postgres\"\ndsn_file = \"" + dsnFile + "\"\n"})
	domain := s.Prosody.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "failover-device")

	// The standby: the same configuration, its own admin port.
	cfg, err := os.ReadFile(filepath.Join(s.Dir, "push2d.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminB := ln.Addr().String()
	ln.Close()
	cfgB := filepath.Join(t.TempDir(), "push2d-b.toml")
	if err := os.WriteFile(cfgB, []byte(strings.Replace(string(cfg), strconv.Quote(s.AdminAddr), strconv.Quote(adminB), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	var logB stack.SyncBuffer
	b := exec.Command(push2dBinary(t), "-config", cfgB)
	b.Stdout, b.Stderr = &logB, &logB
	b.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Process.Signal(syscall.SIGTERM)
		b.Wait()
		if t.Failed() {
			t.Logf("standby log:\n%s", tail(logB.String(), 40))
		}
	})
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(logB.String(), "standing by") })
	if healthy(adminB) {
		t.Fatal("the standby reports healthy while the other instance holds the connection")
	}

	const total, killAt = 300, 100
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range total {
			if err := romeo.Send(t.Context(), chat("juliet@"+domain, "f"+strconv.Itoa(i), "burst "+strconv.Itoa(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	ids := map[string]int{}
	count := 0
	collect := func(until func() bool, within time.Duration) {
		deadline := time.After(within)
		for !until() {
			select {
			case m := <-pusher.Messages:
				if n := m.Child("urn:xmpp:push2:0", "notification"); n != nil {
					ids[m.AttrValue("id")]++
					count++
				}
			case <-deadline:
				return
			}
		}
	}
	collect(func() bool { return count >= killAt }, 30*time.Second)
	if count < killAt {
		t.Fatalf("only %d notifications before the kill", count)
	}
	if err := s.StopPush2d(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	before := count
	waitFor(t, 30*time.Second, func() bool { return healthy(adminB) })
	takeover := time.Since(killed)
	<-sent
	collect(func() bool { return len(ids) >= total }, 60*time.Second)
	collect(func() bool { return false }, 2*time.Second) // late duplicates
	if len(ids) != total {
		t.Errorf("%d distinct notifications for %d messages", len(ids), total)
	}
	t.Logf("%d messages, %d notifications (%d distinct, %d duplicates); the active instance killed after %d notifications, the standby connected (healthy) %v after the kill",
		total, count, len(ids), count-len(ids), before, takeover.Round(time.Millisecond))
}

func healthy(addr string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
