package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/push2/push2/engine"
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
	dsn := pg.NewDatabase(t)
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, p, stack.Options{StoreConfig: "kind = \"postgres\"\ndsn_file = \"" + dsnFile + "\"\n"})
	domain := s.Server.Domain()
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

	const total, killAt = 1000, 300
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
	// Read all along, so that each notification's time is its arrival.
	var mu sync.Mutex
	ids := map[string]int{}
	firstAt := map[string]time.Time{} // a notification id → when it first came
	count := 0
	go func() {
		for {
			select {
			case m := <-pusher.Messages:
				if n := m.Child("urn:xmpp:push2:0", "notification"); n != nil {
					id := m.AttrValue("id")
					mu.Lock()
					if ids[id] == 0 {
						firstAt[id] = time.Now()
					}
					ids[id]++
					count++
					mu.Unlock()
				}
			case <-t.Context().Done():
				return
			}
		}
	}()
	collect := func(until func() bool, within time.Duration) {
		deadline := time.Now().Add(within)
		for {
			mu.Lock()
			ok := until()
			mu.Unlock()
			if ok || time.Now().After(deadline) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	collect(func() bool { return count >= killAt }, 60*time.Second)
	mu.Lock()
	early := count
	mu.Unlock()
	if early < killAt {
		t.Fatalf("only %d notifications before the kill", early)
	}
	pidA := s.Push2dPID()
	if err := s.StopPush2d(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The at-least-once window: the notifications the dead instance had
	// claimed and not recorded as sent (handed to Prosody and awaiting the
	// bridge's routing confirmation, or about to be handed over). Its claims
	// stay for the lease (10 s), then the standby sends these again: those
	// Prosody had routed before the kill reach the push service twice. No
	// other notification can: a replayed event finds its dedupe marks,
	// committed before the event was acknowledged.
	held := heldClaims(t, dsn, pidA)
	mu.Lock()
	before := count
	mu.Unlock()
	waitFor(t, 30*time.Second, func() bool { return healthy(adminB) })
	takeover := time.Since(killed)
	<-sent
	collect(func() bool { return len(ids) >= total }, 120*time.Second)
	collect(func() bool { return false }, 2*time.Second) // late duplicates
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != total {
		t.Errorf("%d distinct notifications for %d messages", len(ids), total)
	}
	resumed := time.Duration(-1) // the first new notification after the standby took over
	for _, at := range firstAt {
		if d := at.Sub(killed); at.After(killed.Add(takeover)) && (resumed < 0 || d < resumed) {
			resumed = d
		}
	}
	// The pause users see: the longest wait, after the kill, between two
	// notifications not seen before.
	var times []time.Time
	for _, at := range firstAt {
		if at.After(killed) {
			times = append(times, at)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var gap time.Duration
	prev := killed
	for _, at := range times {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	dups := count - len(ids)
	if dups > held {
		t.Errorf("%d duplicates, more than the %d notifications the killed instance had claimed and not recorded sent (the at-least-once window)", dups, held)
	}
	if held > engine.SharedInFlight {
		t.Errorf("the killed instance held %d claims on notifications not recorded sent, more than engine.SharedInFlight (%d)", held, engine.SharedInFlight)
	}
	t.Logf("FAILOVER messages=%d notifications=%d distinct=%d duplicates=%d window=%d killed_after=%d takeover=%v resumed=%v gap=%v",
		total, count, len(ids), dups, held, before, takeover.Round(time.Millisecond), resumed.Round(time.Millisecond), gap.Round(time.Millisecond))
}

// heldClaims counts the outbox entries claimed by push2d process pid (its
// claims are named host/pid/random, engine.newOwner) and not recorded as
// sent.
func heldClaims(t *testing.T, dsn string, pid int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM push2_outbox WHERE sent_at IS NULL AND claimed_by LIKE $1`,
		"%/"+strconv.Itoa(pid)+"/%").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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
