package host

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine"
)

// WatcherConfig tunes a Watcher.
type WatcherConfig struct {
	// Interval between two scans of the directory. Default 1 s.
	Interval time.Duration
	// Verify, if set, is called before a new version goes live with the
	// directory of cases shipped next to it (NAME.cases/ beside NAME.wasm,
	// sdk/ABI.md §13); an error rejects the version like one that does not
	// load. Modules without such a directory are loaded as usual.
	// internal/casetest.Verify runs the cases; the host has no case runner
	// of its own, so that it needs no profiles but the module's.
	Verify func(ctx context.Context, h *Host, m *Module, casesDir string) error
}

// Watcher keeps a registry in step with a directory of *.wasm modules
// (DESIGN.md "Hot load", sdk/ABI.md §10): adding, replacing or removing a
// file takes effect at the next scan, without a restart. Files are told
// apart by content hash, so touching a file does nothing and writing the
// same bytes under a new name is a new module.
//
// A new version is compiled and described off the evaluation path, then
// swapped in with one engine.Registry.Update; evaluations that already hold
// the old profiles finish on the old version, which is closed only after its
// last call (Module.Close). A version that does not load, or whose profile
// URIs another file already provides, is rejected with an error log and the
// previous version stays. Write files elsewhere and rename them into the
// directory, so that a scan never reads half a module (a half-written file is
// rejected, then picked up whole at the next scan).
//
// When a module is quarantined its profiles leave the registry; they come
// back when a file with another content hash replaces it.
type Watcher struct {
	h   *Host
	reg *engine.Registry
	dir string
	cfg WatcherConfig

	mu    sync.Mutex
	files map[string]*watched // file name → state
	owner map[string]string   // profile URI → file name
}

type watched struct {
	mod      *Module // the live version; nil if none loaded yet
	rejected string  // content hash of the last version refused
	size     int64
	modTime  time.Time
}

// NewWatcher returns a watcher of dir that loads modules into h and
// registers their profiles in reg. Nothing happens before Scan or Run.
func NewWatcher(h *Host, reg *engine.Registry, dir string, cfg WatcherConfig) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	return &Watcher{h: h, reg: reg, dir: dir, cfg: cfg, files: map[string]*watched{}, owner: map[string]string{}}
}

// Run scans at once and then every Interval until ctx is done. Scan errors
// are logged, never fatal: a daemon keeps the profiles it has.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		if err := w.Scan(ctx); err != nil {
			w.h.logger().Error("wasm plugin directory scan failed", "dir", w.dir, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Modules returns the live module of each file, by file name.
func (w *Watcher) Modules() map[string]*Module {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]*Module{}
	for n, f := range w.files {
		if f.mod != nil {
			out[n] = f.mod
		}
	}
	return out
}

// Scan brings the registry in step with the directory once.
func (w *Watcher) Scan(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".wasm") || strings.HasPrefix(n, ".") {
			continue
		}
		if e.Type()&fs.ModeType != 0 && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		seen[n] = true
		w.scanFile(ctx, n)
	}
	for n, f := range w.files {
		if !seen[n] {
			w.remove(n, f)
		}
	}
	return nil
}

func (w *Watcher) scanFile(ctx context.Context, name string) {
	path := filepath.Join(w.dir, name)
	log := w.h.logger().With("file", path)
	st, err := os.Stat(path)
	if err != nil {
		return // vanished between ReadDir and here; the next scan sees it gone
	}
	f := w.files[name]
	if f == nil {
		f = &watched{}
		w.files[name] = f
	}
	// Unchanged size and time skip the hash, unless the time is recent:
	// file times are coarse, and two writes within one tick look alike.
	if st.Size() == f.size && st.ModTime().Equal(f.modTime) && time.Since(st.ModTime()) > 2*time.Second {
		return
	}
	if st.Size() > int64(w.h.cfg.MaxModuleBytes) {
		f.size, f.modTime = st.Size(), st.ModTime()
		log.Error("wasm module rejected: too large", "bytes", st.Size(), "max", w.h.cfg.MaxModuleBytes)
		return
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		log.Error("wasm module unreadable", "err", err)
		return
	}
	f.size, f.modTime = st.Size(), st.ModTime()
	hash := Hash(wasm)
	if (f.mod != nil && f.mod.Hash() == hash) || f.rejected == hash {
		return
	}
	m, err := w.h.Load(ctx, name, wasm)
	if err == nil {
		err = w.verify(ctx, m, path)
		if err != nil {
			m.release()
		}
	}
	if err == nil {
		err = w.install(name, f, m)
		if err != nil {
			m.release()
		}
	}
	if err != nil {
		f.rejected = hash
		if f.mod != nil {
			log.Error("new version of a wasm module rejected; the previous version stays", "hash", shortHash(hash), "live", shortHash(f.mod.Hash()), "err", err)
		} else {
			log.Error("wasm module rejected", "hash", shortHash(hash), "err", err)
		}
	}
}

// verify runs Config.Verify on the cases next to the module, if both exist.
func (w *Watcher) verify(ctx context.Context, m *Module, path string) error {
	if w.cfg.Verify == nil {
		return nil
	}
	dir := strings.TrimSuffix(path, ".wasm") + ".cases"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil
	}
	return w.cfg.Verify(ctx, w.h, m, dir)
}

// install swaps m in for the file's previous version.
func (w *Watcher) install(name string, f *watched, m *Module) error {
	inRegistry := map[string]string{}
	for _, p := range w.reg.Profiles() {
		inRegistry[p.URI] = p.Source
	}
	newURIs := map[string]bool{}
	for _, u := range m.URIs() {
		newURIs[u] = true
		if o, ok := w.owner[u]; ok && o != name {
			return fmt.Errorf("profile %s is already provided by %s", u, o)
		}
		if _, ok := w.owner[u]; !ok {
			if src, ok := inRegistry[u]; ok {
				return fmt.Errorf("profile %s is already registered by %s", u, src)
			}
		}
	}
	var remove []string
	old := f.mod
	if old != nil {
		for _, u := range old.URIs() {
			if !newURIs[u] {
				remove = append(remove, u)
			}
		}
	}
	if err := w.reg.Update(m.Source(), m.MatchProfiles(), m.SendProfiles(), remove); err != nil {
		return err
	}
	for _, u := range remove {
		delete(w.owner, u)
	}
	for u := range newURIs {
		w.owner[u] = name
	}
	f.mod, f.rejected = m, ""
	m.OnQuarantine(w.quarantined)
	if old != nil {
		old.Close()
		w.h.logger().Info("wasm module replaced", "file", name, "old", shortHash(old.Hash()), "new", shortHash(m.Hash()), "profiles", m.URIs())
	} else {
		w.h.logger().Info("wasm module added", "file", name, "hash", shortHash(m.Hash()), "profiles", m.URIs())
	}
	return nil
}

func (w *Watcher) remove(name string, f *watched) {
	delete(w.files, name)
	if f.mod == nil {
		return
	}
	unregisterIfCurrent(w.reg, f.mod)
	for u, o := range w.owner {
		if o == name {
			delete(w.owner, u)
		}
	}
	f.mod.Close()
	w.h.logger().Info("wasm module removed", "file", name, "hash", shortHash(f.mod.Hash()))
}

// quarantined takes a quarantined module's profiles out of the registry, if
// it is still the live version of its file.
func (w *Watcher) quarantined(m *Module) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, f := range w.files {
		if f.mod == m {
			unregisterIfCurrent(w.reg, m)
			// The module logged the quarantine itself (at error level).
			w.h.logger().Info("quarantined wasm module unregistered until a new version of the file arrives", "file", name, "hash", shortHash(m.Hash()))
		}
	}
}

// Close unregisters every module the watcher loaded and retires it.
func (w *Watcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for n, f := range w.files {
		w.remove(n, f)
	}
}
