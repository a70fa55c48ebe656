package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
	"github.com/push2/push2/internal/xmppclient"
)

// BenchmarkPush2dCost measures push2d's own CPU per pushed message on the
// real Prosody path (issue 12 goal 2), without the servers BenchmarkProsodyCost
// compares: one Prosody 13 + bridge + push2d stack per push2d binary, and
// on each, per round, a burst of 1,000 chat messages to a fresh offline
// recipient with one registration; push2d's CPU (utime+stime of the
// process) is counted from an idle push2d until all 1,000 notifications
// arrived at the push service's client and push2d is idle again.
//
// PUSH2D_COMPARE, if set, is a comma-separated list of push2d binaries
// (e.g. one built from the commit before a change and one after): each gets
// its own stack and the rounds alternate between them (a, b, a, b, …), so a
// before/after comparison is interleaved in one run. Without it the binary
// built from the working tree is measured alone. Metric: push2d-cpu-µs/push
// for each binary (binN- prefixed when comparing).
//
//	go test -run '^$' -bench Push2dCost -benchtime 1x -count 3 ./internal/e2e/
//	PUSH2D_COMPARE=/tmp/before/push2d,/tmp/after/push2d go test -run '^$' -bench Push2dCost -benchtime 1x -count 3 ./internal/e2e/
func BenchmarkPush2dCost(b *testing.B) {
	const burst, rounds = 1000, 4
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bins := []string{push2dBinaryOrCompare(b)}
	if v := os.Getenv("PUSH2D_COMPARE"); v != "" {
		bins = strings.Split(v, ",")
	}
	type setup struct {
		stack  *stack.Stack
		sender *xmppclient.Client
		pusher *xmppclient.Client
		rcpts  []string
		cpu    time.Duration
		pushes int
	}
	total := rounds * b.N
	var setups []*setup
	for i, bin := range bins {
		s, err := stack.Start(ctx, filepath.Join(b.TempDir(), fmt.Sprint(i)), stack.Options{
			Prosody: prosodytest.Prosody13, Push2dBinary: bin, Push2dConfig: "\n",
			ProsodyLogLevel: "info", Push2dLogLevel: "info",
		})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		c := &setup{stack: s}
		domain := s.Server.Domain()
		if c.sender, err = s.Login(ctx, "romeo", "r", "pw", true); err != nil {
			b.Fatal(err)
		}
		defer c.sender.Close()
		if c.pusher, err = s.Login(ctx, "pusher", "svc", "pw", true); err != nil {
			b.Fatal(err)
		}
		defer c.pusher.Close()
		for r := 0; r <= total; r++ { // one more: the warm-up
			user := fmt.Sprintf("rcpt%d", r)
			cl, err := s.Login(ctx, user, "d", "pw", false)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := cl.IQ(ctx, mustIQ("set", enableFor("pusher@"+domain, "bench")))
			cl.Close()
			if err != nil || resp.AttrValue("type") != "result" {
				b.Fatalf("enable for %s: %v %v", user, resp, err)
			}
			c.rcpts = append(c.rcpts, user+"@"+domain)
		}
		setups = append(setups, c)
	}
	seq := 0
	burstOn := func(c *setup, to string) time.Duration {
		b.Helper()
		pid := c.stack.Push2dPID()
		d0 := settledCPU(b, pid)
		for j := 0; j < burst; j++ {
			seq++
			if err := c.sender.Send(ctx, chat(to, fmt.Sprintf("c%d", seq), fmt.Sprintf("message %d", seq))); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.After(2 * time.Minute)
		for got := 0; got < burst; got++ {
			select {
			case <-c.pusher.Messages:
			case <-deadline:
				b.Fatalf("only %d of %d notifications arrived within 2 minutes\npush2d:\n%s", got, burst, tail(c.stack.Push2dLog(), 20))
			}
		}
		return settledCPU(b, pid) - d0
	}
	for _, c := range setups { // warm-up round, not counted
		burstOn(c, c.rcpts[total])
	}
	b.ResetTimer()
	for r := 0; r < total; r++ {
		for _, c := range setups {
			c.cpu += burstOn(c, c.rcpts[r])
			c.pushes += burst
		}
	}
	b.StopTimer()
	for i, c := range setups {
		if n := len(c.pusher.Messages); n != 0 {
			b.Fatalf("%s: %d notifications more than messages sent", bins[i], n)
		}
		name := "push2d-cpu-µs/push"
		if len(setups) > 1 {
			name = fmt.Sprintf("bin%d-%s", i, name)
		}
		b.ReportMetric(float64(c.cpu.Microseconds())/float64(c.pushes), name)
	}
}

// push2dBinaryOrCompare is push2dBinary unless PUSH2D_COMPARE names the
// binaries (then nothing is built).
func push2dBinaryOrCompare(tb testing.TB) string {
	if os.Getenv("PUSH2D_COMPARE") != "" {
		return ""
	}
	return push2dBinary(tb)
}
