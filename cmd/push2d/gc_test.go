package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGCLeavesTheEnvironmentsSettings(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, env := range []map[string]string{{"GOGC": "100"}, {"GOMEMLIMIT": "1GiB"}, {"GOGC": "off", "GOMEMLIMIT": "1GiB"}} {
		debug.SetGCPercent(123)
		if tuneGC(func(k string) string { return env[k] }) {
			t.Errorf("%v: tuneGC applied its settings over the environment's", env)
		}
		if got := debug.SetGCPercent(123); got != 123 {
			t.Errorf("%v: GOGC is %d, want the environment's (123 here)", env, got)
		}
	}
	if !tuneGC(func(string) string { return "" }) {
		t.Fatal("tuneGC did not apply its settings without GOGC or GOMEMLIMIT")
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GOGC = %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != gcMemoryLimit {
		t.Errorf("memory limit = %d, want %d", got, gcMemoryLimit)
	}
}

func TestGCLimitNeverBelowTheDefaultsHeapGoal(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int64
	}{
		{0, gcMemoryLimit},
		{40 << 20, gcMemoryLimit},
		{(gcMemoryLimit - gcLimitSlack) / 2, gcMemoryLimit},
		{100 << 20, 200<<20 + gcLimitSlack},
		{1 << 30, 2<<30 + gcLimitSlack},
	} {
		if got := gcLimitFor(c.live); got != c.want {
			t.Errorf("gcLimitFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}
