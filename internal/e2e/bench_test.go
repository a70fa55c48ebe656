package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// BenchmarkOfflineBurst sends a burst of 2000 messages to an offline user
// with one registration, through real Prosody, the bridge and push2d, and
// measures how fast the push service receives the 2000 notifications
// (pushes/s), then the latency of single pushes (send → notification at the
// push service) one at a time.
//
// It runs on each supported Prosody version and on ejabberd
// (sub-benchmarks prosody13, prosody012, ejabberd; go runs the -count N
// rounds of each sub-benchmark one after the other, not interleaved).
//
//	go test -run '^$' -bench OfflineBurst -benchtime 1x ./internal/e2e/
func BenchmarkOfflineBurst(b *testing.B) {
	for _, p := range prosodytest.Versions {
		b.Run(p.Name(), func(b *testing.B) { benchmarkOfflineBurst(b, server{prosody: p}) })
	}
	b.Run(ejabberd.Name(), func(b *testing.B) { benchmarkOfflineBurst(b, ejabberd) })
}

func benchmarkOfflineBurst(b *testing.B, p server) {
	const burst, samples = 2000, 100
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, b.TempDir(), stack.Options{Server: p.kind, Prosody: p.prosody, Push2dBinary: push2dBinary(b), Push2dConfig: "\n"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	domain := s.Server.Domain()
	pusher, err := s.Login(ctx, "pusher", "svc", "pw", true)
	if err != nil {
		b.Fatal(err)
	}
	romeo, err := s.Login(ctx, "romeo", "r", "pw", true)
	if err != nil {
		b.Fatal(err)
	}
	juliet, err := s.Login(ctx, "juliet", "j", "pw", true)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := juliet.IQ(ctx, mustIQ("set", enableFor("pusher@"+domain, "bench")))
	if err != nil || resp.AttrValue("type") != "result" {
		b.Fatalf("enable: %v %v", resp, err)
	}
	juliet.Close()
	time.Sleep(300 * time.Millisecond)

	seq := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		begin := time.Now()
		for j := 0; j < burst; j++ {
			seq++
			if err := romeo.Send(ctx, chat("juliet@"+domain, fmt.Sprintf("b%d", seq), fmt.Sprintf("message %d", seq))); err != nil {
				b.Fatal(err)
			}
		}
		for got := 0; got < burst; got++ {
			select {
			case <-pusher.Messages:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d of %d notifications arrived", got, burst)
			}
		}
		b.ReportMetric(float64(burst)/time.Since(begin).Seconds(), "pushes/s")
	}
	b.StopTimer()

	var lat []time.Duration
	for j := 0; j < samples; j++ {
		seq++
		t0 := time.Now()
		if err := romeo.Send(ctx, chat("juliet@"+domain, fmt.Sprintf("l%d", seq), "latency")); err != nil {
			b.Fatal(err)
		}
		select {
		case <-pusher.Messages:
			lat = append(lat, time.Since(t0))
		case <-time.After(20 * time.Second):
			b.Fatal("latency sample lost")
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
