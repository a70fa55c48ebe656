package pebblestore

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/push2/push2/engine"
)

// fatal is the store's pebble.Logger. Pebble calls Fatalf when it cannot go
// on, most importantly when a commit's WAL write or sync fails (a full
// disk): it expects Fatalf not to return, and if it did, Commit would report
// the batch as committed although it is not on disk. So Fatalf hands the
// error to OnFatal once and then never returns.
type fatal struct {
	onFatal func(error)
	once    sync.Once
}

func (*fatal) Infof(string, ...any) {} // Pebble's informational chatter

func (f *fatal) Fatalf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	f.once.Do(func() {
		if f.onFatal != nil {
			f.onFatal(err)
			return
		}
		fmt.Fprintln(os.Stderr, "store failed:", err)
		os.Exit(1)
	})
	select {} // the write failed: never report it done
}

// eventListener logs Pebble's warnings worth an operator's attention, at
// most one a minute of each kind: background errors (a flush or compaction
// that failed, which Pebble retries: on a full disk, say), write stalls
// and slow disk operations.
func eventListener(log *slog.Logger) *pebble.EventListener {
	if log == nil {
		return nil
	}
	var bg, stall, slow rateLimit
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			if bg.allow() {
				log.Warn("store: a background write failed; Pebble retries it", "err", err)
			}
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			if stall.allow() {
				log.Warn("store: writes stall", "reason", info.Reason)
			}
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			if slow.allow() {
				log.Warn("store: slow disk", "file", info.Path, "op", info.OpType.String(), "duration", info.Duration)
			}
		},
	}
}

type rateLimit struct{ last atomic.Int64 }

func (r *rateLimit) allow() bool {
	now := time.Now().UnixNano()
	last := r.last.Load()
	return now-last >= int64(time.Minute) && r.last.CompareAndSwap(last, now)
}

// spaceCheckEvery is how often a spaceWatch looks at the free space when
// no enable asks.
const spaceCheckEvery = 10 * time.Second

// spaceWatch keeps an eye on the free space of the store's filesystem:
// admit (every PutRegistration) reads it afresh, a ticker reads it in
// between, and each crossing of the minimum is logged once.
type spaceWatch struct {
	fs      vfs.FS
	dir     string
	min     uint64
	log     *slog.Logger
	low     atomic.Bool
	mu      sync.Mutex // orders the logging of crossings
	done    chan struct{}
	stopped sync.Once
}

func newSpaceWatch(fs vfs.FS, dir string, min uint64, log *slog.Logger) *spaceWatch {
	if min == 0 {
		return nil
	}
	w := &spaceWatch{fs: fs, dir: dir, min: min, log: log, done: make(chan struct{})}
	w.admit()
	go func() {
		t := time.NewTicker(spaceCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				w.admit()
			}
		}
	}()
	return w
}

// admit returns an error wrapping engine.ErrStorageLow while the free space
// is below the minimum. An unreadable free space admits: the write itself
// will tell.
func (w *spaceWatch) admit() error {
	if w == nil {
		return nil
	}
	du, err := w.fs.GetDiskUsage(w.dir)
	if err != nil {
		return nil
	}
	low := du.AvailBytes < w.min
	w.mu.Lock()
	if w.low.Swap(low) != low && w.log != nil {
		if low {
			w.log.Warn("store: free space below store.min_free_mib: new registrations are refused (wait/resource-constraint) until there is more; pushes are still delivered",
				"dir", w.dir, "free_mib", du.AvailBytes>>20, "min_free_mib", w.min>>20)
		} else {
			w.log.Info("store: free space back above store.min_free_mib: new registrations are accepted again", "dir", w.dir, "free_mib", du.AvailBytes>>20)
		}
	}
	w.mu.Unlock()
	if low {
		return fmt.Errorf("%w: %d KiB free on the filesystem of %s, less than the minimum of %d KiB", engine.ErrStorageLow, du.AvailBytes>>10, w.dir, w.min>>10)
	}
	return nil
}

func (w *spaceWatch) stop() {
	if w != nil {
		w.stopped.Do(func() { close(w.done) })
	}
}

// Low reports whether the store's filesystem was short of space at the
// last look (always false without a minimum).
func (s *Store) Low() bool { return s.space != nil && s.space.low.Load() }
