package main

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// push2d's garbage collector settings, unless the environment sets GOGC
// or GOMEMLIMIT (then the Go runtime's own handling stays untouched).
//
// Go's default (GOGC=100: collect when the heap has doubled since the last
// collection) made the collector a tenth of push2d's CPU per pushed
// message on a burst through Prosody (issue 12 goal 2), for a live heap
// of a few MB to ~70 MB (1,000,000 registrations with the bounded
// registration cache). GOGC=400 collects a quarter as often; the memory
// limit keeps the larger heap within bounds (the resident set stays under
// 200 MB with a million registrations), and gcLimitFloor raises the limit
// whenever the live heap outgrows it, so that the limit never makes the
// collector run more often than Go's default would (a fixed limit under a
// live heap that large would have the collector run without pause).
const (
	gcPercent = 400
	// gcMemoryLimit is the soft limit of the Go runtime's memory (heap,
	// stacks, metadata) while the live heap is small.
	gcMemoryLimit = 160 << 20
	// gcLimitSlack is what the runtime holds besides the heap, added to
	// twice the live heap (the default's heap goal).
	gcLimitSlack = 16 << 20
	gcLimitEvery = 10 * time.Second
)

// tuneGC applies push2d's collector settings if getenv sets neither GOGC
// nor GOMEMLIMIT, and reports whether it did.
func tuneGC(getenv func(string) string) bool {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(gcMemoryLimit)
	return true
}

// gcLimitFor is the memory limit for a live heap of live bytes: the base
// limit, or, for a larger heap, what Go's default would let the heap grow
// to, plus the runtime's other memory.
func gcLimitFor(live uint64) int64 {
	return max(int64(gcMemoryLimit), 2*int64(live)+gcLimitSlack)
}

// gcLimitFloor keeps the memory limit at gcLimitFor(the live heap) until
// ctx ends, checking every gcLimitEvery (a read of a runtime metric).
func gcLimitFloor(ctx context.Context) {
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(gcLimitEvery)
	defer t.Stop()
	limit := int64(gcMemoryLimit)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rtmetrics.Read(sample)
		if sample[0].Value.Kind() != rtmetrics.KindUint64 {
			return
		}
		if want := gcLimitFor(sample[0].Value.Uint64()); want != limit {
			debug.SetMemoryLimit(want)
			limit = want
		}
	}
}
