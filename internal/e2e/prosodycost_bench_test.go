package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
	"github.com/push2/push2/internal/xmppclient"

	xstanza "mellium.im/xmpp/stanza"
)

// prosodyGCModes are the garbage collector settings the Prosody benchmarks
// run with: Prosody's default (incremental) and Lua 5.4's generational
// collector, which both Prosody 13 and 0.12 (on Lua 5.4, as Debian builds
// it) accept as gc = { mode = "generational" }.
var prosodyGCModes = []struct{ name, config string }{
	{"gc=default", ""},
	{"gc=generational", `gc = { mode = "generational" }`},
}

// procCPU is the user+system CPU time a process (all its threads) has used,
// from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	if pid <= 0 {
		tb.Fatalf("procCPU: no process (pid %d)", pid)
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		tb.Fatalf("procCPU: %v", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		tb.Fatalf("procCPU: unexpected /proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		tb.Fatalf("procCPU: short /proc/%d/stat: %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("procCPU: /proc/%d/stat: %v %v", pid, err1, err2)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// settledCPU waits until pid has used no CPU for two consecutive 100 ms
// looks (at most 5 s), so that work Prosody still does after the condition
// a burst waited for (acks from push2d, timers) is counted with the burst,
// and returns the CPU time then.
func settledCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	last := procCPU(tb, pid)
	still := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && still < 2; {
		time.Sleep(100 * time.Millisecond)
		now := procCPU(tb, pid)
		if now == last {
			still++
		} else {
			still = 0
		}
		last = now
	}
	return last
}

func pingIQ(to string) *stanza.Element {
	iq := mustIQ("get", `<ping xmlns="urn:xmpp:ping"/>`)
	iq.SetAttr("to", to)
	return iq
}

// costSetup is one of the three servers BenchmarkProsodyCost compares.
type costSetup struct {
	name     string
	prosody  *prosodytest.Server
	stack    *stack.Stack // nil for the server without the bridge
	sender   *xmppclient.Client
	pusher   *xmppclient.Client // push service account (reg only)
	rcpts    []string           // one fresh offline recipient per round
	cpu      time.Duration      // Prosody CPU over all measured bursts
	push2d   time.Duration      // push2d CPU over all measured bursts
	messages int
	rounds   []time.Duration // Prosody CPU of each burst
}

// minMedMax formats the per-round figures of c (s per 1,000 messages).
func (c *costSetup) minMedMax(burst int) string {
	v := make([]float64, len(c.rounds))
	for i, d := range c.rounds {
		v[i] = d.Seconds() * 1000 / float64(burst)
	}
	sort.Float64s(v)
	if len(v) == 0 {
		return "no rounds"
	}
	return fmt.Sprintf("min %.3f median %.3f max %.3f", v[0], v[len(v)/2], v[len(v)-1])
}

// BenchmarkProsodyCost measures what the bridge and push2d cost Prosody
// (issue 12, goals 1 and 2). Three servers run side by side, started the
// same way, each its own Prosody:
//
//	none:  Prosody without the bridge (no push module)
//	reg:   bridge + push2d, the recipient has a push registration
//	noreg: bridge + push2d, the recipient has none
//
// Each round sends the same burst of 1,000 chat messages from one mellium
// client to an offline user (a fresh one each round, so the stores grow
// alike) on each server in turn (none, reg, noreg, none, reg, noreg, …;
// three rounds), and counts the Prosody process's CPU time (utime+stime)
// from before the burst until Prosody has processed it and gone idle: for
// reg, all 1,000 notifications have arrived at the push service's client;
// for every setup, the sender's final ping to the server has been answered
// (Prosody handles a connection's stanzas in order) and Prosody then used
// no CPU for 200 ms. push2d's CPU is counted over the same interval.
//
// With PUSH2_BRIDGE_BEFORE=dir (a module directory holding another
// mod_push2_bridge/, e.g. an older bridge from git), a fourth server runs
// that bridge with the same push2d and a registration (before), in the
// same interleaved rounds, for a before/after comparison from one run:
//
//	git -C . show <commit>:examples/prosody/mod_push2_bridge/mod_push2_bridge.lua > /tmp/before/mod_push2_bridge/mod_push2_bridge.lua
//	PUSH2_BRIDGE_BEFORE=/tmp/before go test -run '^$' -bench ProsodyCost -benchtime 1x -timeout 60m ./internal/e2e/
//
// Each round's figure (s per 1,000 messages) is logged as min/median/max
// per setup.
//
// Metrics: prosody-cpu-s/1000msg for each setup, the bridge's extra cost
// as a ratio of the no-module cost ((reg−none)/none, (noreg−none)/none),
// push2d-cpu-µs/push (reg) and noreg-push2d-cpu-µs/msg. Each Prosody
// version runs with its default GC and with the generational GC. Prosody
// and push2d log at info level (a debug log costs Prosody more than the
// bridge does).
//
//	go test -run '^$' -bench ProsodyCost -benchtime 1x -count 3 -timeout 60m ./internal/e2e/
func BenchmarkProsodyCost(b *testing.B) {
	for _, p := range prosodytest.Versions {
		for _, gc := range prosodyGCModes {
			b.Run(p.Name()+"/"+gc.name, func(b *testing.B) { benchmarkProsodyCost(b, p, gc.config) })
		}
	}
}

func benchmarkProsodyCost(b *testing.B, p prosodytest.Version, gcConfig string) {
	const burst, rounds = 1000, 3
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bin := push2dBinary(b)
	total := rounds * b.N

	none := &costSetup{name: "none"}
	srv, err := prosodytest.Start(ctx, prosodytest.Options{
		Version: p, Dir: filepath.Join(b.TempDir(), "prosody"), ExtraConfig: gcConfig, LogLevel: "info",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	none.prosody = srv
	reg, noreg := &costSetup{name: "reg"}, &costSetup{name: "noreg"}
	bridged := []*costSetup{reg, noreg}
	var before *costSetup
	beforeDir := os.Getenv("PUSH2_BRIDGE_BEFORE")
	if beforeDir != "" {
		before = &costSetup{name: "before"}
		bridged = append(bridged, before)
	}
	for _, c := range bridged {
		opts := stack.Options{
			Prosody: p, Push2dBinary: bin, Push2dConfig: "\n",
			ProsodyGlobalConfig: gcConfig, ProsodyLogLevel: "info", Push2dLogLevel: "info",
		}
		if c == before {
			opts.BridgeModuleDir = beforeDir
		}
		s, err := stack.Start(ctx, b.TempDir(), opts)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		c.stack, c.prosody = s, s.Prosody
	}

	login := func(srv *prosodytest.Server, user string) *xmppclient.Client {
		b.Helper()
		if err := srv.CreateUser(user, "pw"); err != nil {
			b.Fatal(err)
		}
		sess, err := srv.DialClient(ctx, srv.JID(user), "pw")
		if err != nil {
			b.Fatalf("%s: login %s: %v", srv.Dir(), user, err)
		}
		c := xmppclient.Serve(sess)
		if err := sess.Send(ctx, xstanza.Presence{}.Wrap(nil)); err != nil {
			b.Fatal(err)
		}
		return c
	}
	setups := append([]*costSetup{none}, bridged...)
	for _, c := range setups {
		c.sender = login(c.prosody, "romeo")
		defer c.sender.Close()
		for r := 0; r < total; r++ {
			user := fmt.Sprintf("rcpt%d", r)
			if err := c.prosody.CreateUser(user, "pw"); err != nil {
				b.Fatal(err)
			}
			c.rcpts = append(c.rcpts, user+"@"+c.prosody.Domain())
		}
	}
	for _, c := range []*costSetup{reg, before} {
		if c == nil {
			continue
		}
		c.pusher = login(c.prosody, "pusher")
		defer c.pusher.Close()
		for _, user := range c.rcpts {
			cl := login(c.prosody, strings.TrimSuffix(user, "@"+c.prosody.Domain()))
			resp, err := cl.IQ(ctx, mustIQ("set", enableFor("pusher@"+c.prosody.Domain(), "bench")))
			cl.Close()
			if err != nil || resp.AttrValue("type") != "result" {
				b.Fatalf("%s: enable for %s: %v %v", c.name, user, resp, err)
			}
		}
	}
	// The recipients are offline from here on: each logged out well before
	// its round (the rounds use them in order, and the none burst runs
	// before the first reg one).

	seq := 0
	burstOn := func(c *costSetup, round int) {
		b.Helper()
		ppid := c.prosody.PID()
		dpid := 0
		if c.stack != nil {
			dpid = c.stack.Push2dPID()
		}
		// Settle first: nothing of the previous setup's work or of the
		// set-up is counted.
		p0 := settledCPU(b, ppid)
		var d0 time.Duration
		if dpid != 0 {
			d0 = procCPU(b, dpid)
		}
		to := c.rcpts[round]
		for j := 0; j < burst; j++ {
			seq++
			if err := c.sender.Send(ctx, chat(to, fmt.Sprintf("c%d", seq), fmt.Sprintf("message %d", seq))); err != nil {
				b.Fatalf("%s: send: %v", c.name, err)
			}
		}
		if c.pusher != nil {
			deadline := time.After(2 * time.Minute)
			for got := 0; got < burst; got++ {
				select {
				case <-c.pusher.Messages:
				case <-deadline:
					b.Fatalf("%s round %d: only %d of %d notifications arrived within 2 minutes\npush2d:\n%s", c.name, round, got, burst, tail(c.stack.Push2dLog(), 20))
				}
			}
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
		resp, err := c.sender.IQ(pctx, pingIQ(c.prosody.Domain()))
		pcancel()
		if err != nil || resp.AttrValue("type") != "result" {
			b.Fatalf("%s round %d: ping after the burst: %v %v", c.name, round, resp, err)
		}
		used := settledCPU(b, ppid) - p0
		c.cpu += used
		c.rounds = append(c.rounds, used)
		if dpid != 0 {
			c.push2d += procCPU(b, dpid) - d0
		}
		c.messages += burst
	}

	b.ResetTimer()
	for r := 0; r < total; r++ {
		for _, c := range setups {
			burstOn(c, r)
		}
	}
	b.StopTimer()
	// Nothing more reached the push service (noreg must push nothing).
	if n := len(reg.pusher.Messages); n != 0 {
		b.Fatalf("%d notifications more than messages sent", n)
	}
	for _, c := range setups {
		b.Logf("%s %s: prosody-cpu-s/1000msg per round: %s", p.Name(), c.name, c.minMedMax(burst))
	}

	per1000 := func(c *costSetup) float64 { return c.cpu.Seconds() * 1000 / float64(c.messages) }
	a := per1000(none)
	if a <= 0 {
		b.Fatal("Prosody without the bridge used no measurable CPU")
	}
	b.ReportMetric(a, "none-prosody-cpu-s/1000msg")
	b.ReportMetric(per1000(reg), "reg-prosody-cpu-s/1000msg")
	b.ReportMetric(per1000(noreg), "noreg-prosody-cpu-s/1000msg")
	b.ReportMetric((per1000(reg)-a)/a, "reg-extra/none")
	b.ReportMetric((per1000(noreg)-a)/a, "noreg-extra/none")
	b.ReportMetric(float64(reg.push2d.Microseconds())/float64(reg.messages), "push2d-cpu-µs/push")
	b.ReportMetric(float64(noreg.push2d.Microseconds())/float64(noreg.messages), "noreg-push2d-cpu-µs/msg")
	if before != nil {
		if n := len(before.pusher.Messages); n != 0 {
			b.Fatalf("before: %d notifications more than messages sent", n)
		}
		b.ReportMetric(per1000(before), "before-prosody-cpu-s/1000msg")
		b.ReportMetric((per1000(before)-a)/a, "before-extra/none")
		b.ReportMetric(float64(before.push2d.Microseconds())/float64(before.messages), "before-push2d-cpu-µs/push")
	}
}

// BenchmarkProsodyRate offers 500 chat messages per second for 5 s to an
// offline user with one registration, through real Prosody, the bridge
// and push2d, and reports the offered rate achieved, the pushes per second
// that arrived at the push service's client (all of them, from the first
// send to the last arrival) and the notification latency (send → arrival),
// p50 and p99. Notifications are paired with messages in order (the i-th
// notification with the i-th message sent). Prosody and push2d log at info
// level; each Prosody version runs with its default and the generational
// GC.
//
//	go test -run '^$' -bench ProsodyRate -benchtime 1x -count 3 ./internal/e2e/
func BenchmarkProsodyRate(b *testing.B) {
	for _, p := range prosodytest.Versions {
		for _, gc := range prosodyGCModes {
			b.Run(p.Name()+"/"+gc.name, func(b *testing.B) { benchmarkProsodyRate(b, p, gc.config) })
		}
	}
}

func benchmarkProsodyRate(b *testing.B, p prosodytest.Version, gcConfig string) {
	const rate, seconds = 500, 5
	const n = rate * seconds
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, b.TempDir(), stack.Options{
		Prosody: p, Push2dBinary: push2dBinary(b), Push2dConfig: "\n",
		ProsodyGlobalConfig: gcConfig, ProsodyLogLevel: "info", Push2dLogLevel: "info",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	domain := s.Server.Domain()
	pusher, err := s.Login(ctx, "pusher", "svc", "pw", true)
	if err != nil {
		b.Fatal(err)
	}
	defer pusher.Close()
	romeo, err := s.Login(ctx, "romeo", "r", "pw", true)
	if err != nil {
		b.Fatal(err)
	}
	defer romeo.Close()

	var lat []time.Duration
	var elapsed, offered time.Duration
	for i := 0; i < b.N; i++ {
		user := fmt.Sprintf("juliet%d", i)
		juliet, err := s.Login(ctx, user, "j", "pw", true)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := juliet.IQ(ctx, mustIQ("set", enableFor("pusher@"+domain, "bench")))
		juliet.Close()
		if err != nil || resp.AttrValue("type") != "result" {
			b.Fatalf("enable: %v %v", resp, err)
		}
		// One push first: the path is warm, and juliet is offline (a
		// message Prosody still delivered to her closing session gives no
		// notification, so send another every 3 s, then drop any late
		// extra notifications).
		warm := time.After(60 * time.Second)
	warmup:
		for w := 0; ; w++ {
			if err := romeo.Send(ctx, chat(user+"@"+domain, fmt.Sprintf("warm%d-%d", i, w), "warm")); err != nil {
				b.Fatal(err)
			}
			select {
			case <-pusher.Messages:
				break warmup
			case <-time.After(3 * time.Second):
			case <-warm:
				b.Fatalf("no warm-up notification arrived within 60s\npush2d:\n%s", tail(s.Push2dLog(), 20))
			}
		}
		time.Sleep(time.Second)
		for len(pusher.Messages) > 0 {
			<-pusher.Messages
		}

		sent := make([]time.Time, n)
		recv := make([]time.Time, 0, n)
		done := make(chan struct{})
		go func() {
			defer close(done)
			deadline := time.After(3 * time.Minute)
			for len(recv) < n {
				select {
				case <-pusher.Messages:
					recv = append(recv, time.Now())
				case <-deadline:
					return
				}
			}
		}()
		start := time.Now()
		for j := 0; j < n; j++ {
			if d := time.Until(start.Add(time.Duration(j) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			sent[j] = time.Now()
			if err := romeo.Send(ctx, chat(user+"@"+domain, fmt.Sprintf("r%d-%d", i, j), fmt.Sprintf("message %d", j))); err != nil {
				b.Fatal(err)
			}
		}
		offered += time.Since(start)
		<-done
		if len(recv) < n {
			b.Fatalf("only %d of %d notifications arrived within 3 minutes\npush2d:\n%s", len(recv), n, tail(s.Push2dLog(), 20))
		}
		elapsed += recv[n-1].Sub(start)
		for j := range recv {
			lat = append(lat, recv[j].Sub(sent[j]))
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(n*b.N)/offered.Seconds(), "offered-msg/s")
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "pushes/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
