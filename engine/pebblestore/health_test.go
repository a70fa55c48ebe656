package pebblestore_test

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
)

// freeFS is the real file system reporting free bytes as set.
type freeFS struct {
	vfs.FS
	free atomic.Uint64
}

func (f *freeFS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	du, err := f.FS.GetDiskUsage(path)
	du.AvailBytes = f.free.Load()
	return du, err
}

func reg(id string) engine.StoredRegistration {
	return engine.StoredRegistration{Account: "juliet@example.org", ID: id, Created: time.Now(), Enable: "<enable/>"}
}

// TestLowSpaceRefusesRegistrations: below the minimum free space,
// registrations are refused with ErrStorageLow and nothing stored, while
// delivery bookkeeping goes on; with space again they are accepted.
func TestLowSpaceRefusesRegistrations(t *testing.T) {
	fs := &freeFS{FS: vfs.Default}
	fs.free.Store(1 << 30)
	s, _, err := pebblestore.OpenWith(t.TempDir(), pebblestore.Options{MinFreeBytes: 64 << 20, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.PutRegistration(reg("phone"), 0); err != nil {
		t.Fatal(err)
	}
	fs.free.Store(10 << 20)
	_, err = s.PutRegistration(reg("laptop"), 0)
	if !errors.Is(err, engine.ErrStorageLow) || !strings.Contains(err.Error(), "KiB free") {
		t.Fatalf("PutRegistration with 10 MiB free of 64: %v; want ErrStorageLow", err)
	}
	if !s.Low() {
		t.Error("Low() is false")
	}
	if rs, _ := s.Registrations("juliet@example.org"); len(rs) != 1 {
		t.Errorf("refused registration stored: %v", rs)
	}
	k := engine.RegKey{Account: "juliet@example.org", ID: "phone"}
	first, err := s.RecordPush(k, []string{"m1"}, time.Now(), engine.OutboxEntry{ID: "n1", Account: k.Account, Reg: k.ID})
	if err != nil || !first {
		t.Fatalf("RecordPush while short of space: %v %v", first, err)
	}
	if err := errors.Join(s.PutOutbox(engine.OutboxEntry{ID: "n1", Account: k.Account, Reg: k.ID, Attempts: 1}, true), s.DeleteOutbox("n1")); err != nil {
		t.Fatal(err)
	}
	fs.free.Store(100 << 20)
	if _, err := s.PutRegistration(reg("laptop"), 0); err != nil || s.Low() {
		t.Fatalf("PutRegistration with space again: %v (low %v)", err, s.Low())
	}
}

// TestFatalWriteError: when the WAL write of a push record fails (a full
// disk: ENOSPC), Pebble's fatal error goes to OnFatal, once, and the push
// is never reported as recorded. Pebble's own logger would exit the process
// from inside the commit; a logger that returned would make Commit report
// the batch as committed.
func TestFatalWriteError(t *testing.T) {
	var full atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if full.Load() && (op == errorfs.OpFileWrite || op == errorfs.OpFileSync) && strings.HasSuffix(path, ".log") {
			return syscall.ENOSPC
		}
		return nil
	})
	fatal := make(chan error, 2)
	s, _, err := pebblestore.OpenWith(filepath.Join(t.TempDir(), "s"), pebblestore.Options{
		FS:      errorfs.Wrap(vfs.Default, inj),
		OnFatal: func(err error) { fatal <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	k := engine.RegKey{Account: "juliet@example.org", ID: "phone"}
	if _, err := s.PutRegistration(reg("phone"), 0); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	returned := make(chan error, 1)
	go func() {
		first, err := s.RecordPush(k, []string{"m1"}, time.Now(), engine.OutboxEntry{ID: "n1", Account: k.Account, Reg: k.ID})
		if first && err == nil {
			err = errors.New("reported as recorded")
		}
		returned <- err
	}()
	select {
	case err := <-fatal:
		if !strings.Contains(err.Error(), "no space left on device") {
			t.Errorf("fatal error %q does not name the cause", err)
		}
	case err := <-returned:
		t.Fatalf("RecordPush returned %v without a fatal store error", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no fatal error within 20s of a failing WAL write")
	}
	select {
	case err := <-returned:
		if err == nil || strings.Contains(err.Error(), "reported as recorded") {
			t.Errorf("RecordPush after the failed write: %v", err)
		}
	case <-time.After(500 * time.Millisecond):
		// Blocked for good: not reported as done, as it must be.
	}
	select {
	case err := <-fatal:
		t.Errorf("OnFatal called twice: %v", err)
	default:
	}
}
