package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// scaleAccounts is the size of BenchmarkMillion's store: one registration
// (a notify-only "important" match) per account.
const scaleAccounts = 1_000_000

func scaleAccount(i int) string { return "u" + strconv.Itoa(i) + "@capulet.lit" }

// scaleStore returns the directory of a Pebble store with scaleAccounts
// registrations, built once and kept under os.TempDir for later runs
// (building takes a minute or two on the project's machine). A store is
// reused only if a previous build completed ("complete" holds the count).
func scaleStore(b *testing.B) string {
	dir := filepath.Join(os.TempDir(), "push2-bench-million-v1")
	want := []byte(strconv.Itoa(scaleAccounts))
	if got, err := os.ReadFile(filepath.Join(dir, "complete")); err == nil && bytes.Equal(got, want) {
		return filepath.Join(dir, "store")
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	store, err := pebblestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		b.Fatal(err)
	}
	// The stored form Enable writes, with a client of its own per account.
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		b.Fatal(err)
	}
	r, err := engine.ParseEnable(context.Background(), reg, engine.Limits{}, scaleAccount(0), "phone", stanza.MustParse(enableXML(matchXML("important"))))
	if err != nil {
		b.Fatal(err)
	}
	tmpl := r.Enable.String()
	const client = "https://push.example.com/adlfkjadafdasf"
	if !strings.Contains(tmpl, client) {
		b.Fatalf("stored form %s lacks the client", tmpl)
	}
	start := time.Now()
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 { // concurrent synced writes share syncs in Pebble
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= scaleAccounts {
					return
				}
				s := engine.StoredRegistration{Account: scaleAccount(i), ID: "phone", Created: created,
					Enable: strings.Replace(tmpl, client, client+"/"+strconv.Itoa(i), 1)}
				if _, err := store.PutRegistration(s, 5); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if err := store.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), want, 0o600); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d registrations in %s (%s)", scaleAccounts, time.Since(start).Round(time.Second), dir)
	return filepath.Join(dir, "store")
}

// BenchmarkMillion measures the engine on a Pebble store with 1,000,000
// registrations (one per account), with the default configuration (a
// registration cache far smaller than the store) while another goroutine
// evaluates stanzas for accounts drawn uniformly from half of them, the
// access pattern a bounded cache serves worst. Each iteration takes one
// sample of each: the first lookup of an account nobody touched in this
// process (store read and parse), a lookup of the same account again
// (cached), and an enable of a second device on an account (parsed,
// stored and synced) next to a bare 1 KiB write and fdatasync on the same
// filesystem (what the enable must wait for, at this moment of the shared
// disk), plus the first lookup's thread CPU time (what it costs whatever
// else the machine runs). It reports their p50 and p99 in µs, the evaluations
// the other goroutine made per second, and the process's heap in use and
// resident set (the largest seen while measuring, sampled every 10 ms).
//
//	go test -run '^$' -bench Million -benchtime 3000x ./engine/
//
// The first run builds the store under os.TempDir (push2-bench-million-v1,
// about 300 MB) and keeps it for later runs.
func BenchmarkMillion(b *testing.B) {
	dir := scaleStore(b)
	runtime.GC()
	debug.FreeOSMemory()
	store, err := pebblestore.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		b.Fatal(err)
	}
	e := engine.New(store, reg, engine.Config{})
	ctx := context.Background()
	const half = scaleAccounts / 2
	if b.N > half {
		b.Fatalf("at most %d iterations", half)
	}

	// The concurrent evaluations: a chat state (suppressed by "important")
	// for a random account of the first half.
	stop := make(chan struct{})
	var evals atomic.Int64
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		st := stanza.MustParse(msgChatState)
		rnd := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			acct := scaleAccount(rnd.IntN(half))
			res, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: acct, Trigger: engine.TriggerOffline}})
			if err != nil || len(res.Outcomes) != 1 {
				b.Errorf("evaluate %s: %v, %+v", acct, err, res)
				return
			}
			evals.Add(1)
		}
	}()
	var peakRSS atomic.Int64
	bg.Add(1)
	go func() {
		defer bg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if rss := residentBytes(); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	// The second half, in a random order: accounts nobody looked up yet.
	order := rand.New(rand.NewPCG(3, 4)).Perm(half)
	enable := stanza.MustParse(enableXML(matchXML("important")))
	first := make([]time.Duration, 0, b.N)
	firstCPU := make([]time.Duration, 0, b.N)
	cached := make([]time.Duration, 0, b.N)
	enables := make([]time.Duration, 0, b.N)
	syncs := make([]time.Duration, 0, b.N)
	run := strconv.FormatInt(time.Now().UnixNano(), 36) // a new device per run
	// The bare cost of what an enable must wait for: a 1 KiB write and
	// fdatasync on the same filesystem, interleaved.
	f, err := os.CreateTemp(filepath.Dir(dir), "sync-probe-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 1024)
	// The thread CPU time of the first lookups (what they cost push2d,
	// whatever else the machine runs) needs this goroutine on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		acct := scaleAccount(half + order[i])
		c0 := threadCPU()
		t0 := time.Now()
		regs, err := e.Registrations(ctx, acct)
		t1 := time.Now()
		c1 := threadCPU()
		again, err2 := e.Registrations(ctx, acct)
		t2 := time.Now()
		if err != nil || err2 != nil || len(regs) == 0 || len(again) != len(regs) {
			b.Fatalf("%s: %d then %d registrations, %v, %v", acct, len(regs), len(again), err, err2)
		}
		if _, _, err := e.Enable(ctx, scaleAccount(half+order[b.N+i%(half-b.N)]), "tablet-"+run, enable); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if _, err := f.WriteAt(block, int64(i%1024)*1024); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		first, firstCPU, cached = append(first, t1.Sub(t0)), append(firstCPU, c1-c0), append(cached, t2.Sub(t1))
		enables, syncs = append(enables, t3.Sub(t2)), append(syncs, t4.Sub(t3))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	bg.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"first", first}, {"first-cpu", firstCPU}, {"cached", cached}, {"enable", enables}, {"fdatasync", syncs}} {
		slices.Sort(s.d)
		b.ReportMetric(float64(s.d[len(s.d)/2])/1e3, s.name+"-p50-µs")
		b.ReportMetric(float64(s.d[len(s.d)*99/100])/1e3, s.name+"-p99-µs")
	}
	b.ReportMetric(float64(evals.Load())/elapsed.Seconds(), "evals/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(float64(peakRSS.Load())/(1<<20), "rss-MB")
	_, regs := e.CacheLen()
	b.ReportMetric(float64(regs), "cached-regs")
}

// threadCPU is the CPU time the calling OS thread has used, to the
// nanosecond (clock_gettime(CLOCK_THREAD_CPUTIME_ID); getrusage counts in
// scheduler ticks).
func threadCPU() time.Duration {
	const clockThreadCPUTime = 3
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// residentBytes is the process's resident set size (VmRSS), 0 where
// /proc cannot tell.
func residentBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
