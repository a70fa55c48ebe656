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

	"github.com/fsnotify/fsnotify"

	"github.com/push2/push2/engine"
)

// WatcherConfig tunes a Watcher.
type WatcherConfig struct {
	// Interval between two scans of the directory when no file event
	// arrives. Run scans as soon as the directory reports a change (file
	// events: inotify on Linux); the periodic scan is the fallback for file
	// systems that report none (NFS, some container mounts). Default 1 s.
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
// file takes effect at once (Run follows the directory's file events),
// without a restart. Files are told apart by content hash, so touching a
// file does nothing and writing the same bytes under a new name is a new
// module.
//
// A new version is compiled and described off the evaluation path, and
// outside the watcher's lock: the files of one scan load in parallel, and a
// slow compile holds up neither the others nor Modules. It is then swapped
// in with one engine.Registry.Update; evaluations that already hold the old
// profiles finish on the old version, which is closed only after its last
// call (Module.Close), and a caller that reaches the old version after its
// release is served by the new one. A version that does not load, or whose
// profile URIs another file already provides, is rejected with an error log
// and the previous version stays. Write files elsewhere and rename them into
// the directory, so that a scan never reads half a module (a half-written
// file is rejected, then picked up whole at the next event or scan).
//
// When a module is quarantined its profiles leave the registry; they come
// back when a file with another content hash replaces it.
type Watcher struct {
	h   *Host
	reg *engine.Registry
	dir string
	cfg WatcherConfig

	scanMu sync.Mutex // one Scan at a time

	mu     sync.Mutex
	files  map[string]*watched // file name → state
	owner  map[string]string   // profile URI → file name
	closed bool

	upgrades sync.WaitGroup // compiles of interpreted versions under way
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

// settle is how long Run waits after a file event for more of the same
// burst (a rename brings two or three, a write in place many) before it
// scans.
const settle = 10 * time.Millisecond

// Run scans at once, then whenever the directory reports a change, and
// every Interval in any case, until ctx is done. Scan errors are logged,
// never fatal: a daemon keeps the profiles it has. Without file events
// (the directory cannot be watched) it only polls, and says so.
func (w *Watcher) Run(ctx context.Context) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw, err := fsnotify.NewWatcher(); err != nil {
		w.h.logger().Warn("wasm plugin directory: no file events, polling only", "dir", w.dir, "every", w.cfg.Interval, "err", err)
	} else if err := fw.Add(w.dir); err != nil {
		fw.Close()
		w.h.logger().Warn("wasm plugin directory: no file events, polling only", "dir", w.dir, "every", w.cfg.Interval, "err", err)
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
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
		case err := <-errs:
			w.h.logger().Warn("wasm plugin directory: file events lost; scanning", "dir", w.dir, "err", err)
		case <-events:
			// Let the burst settle, then drain it: one scan sees it all.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(settle):
			}
			for drained := false; !drained; {
				select {
				case <-events:
				default:
					drained = true
				}
			}
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

// Scan brings the registry in step with the directory once. New versions
// load in parallel, outside the watcher's lock; Scan returns when each is
// live or rejected.
func (w *Watcher) Scan(ctx context.Context) error {
	w.scanMu.Lock()
	defer w.scanMu.Unlock()
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
	var loads []*pending
	w.mu.Lock()
	for _, n := range names {
		seen[n] = true
		if p := w.scanFile(n); p != nil {
			loads = append(loads, p)
		}
	}
	for n, f := range w.files {
		if !seen[n] {
			w.remove(n, f)
		}
	}
	w.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range loads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.load(ctx, w)
		}()
	}
	wg.Wait()

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range loads {
		if w.finish(p) && p.mod.interpreted && !w.closed {
			w.upgrades.Add(1)
			go w.upgrade(p)
		}
	}
	return nil
}

// interpretFirst is the module size from which a new version goes live on
// wazero's interpreter first and is compiled in the background: a Go
// module (2 MB) takes seconds to compile and well under one to start
// interpreted; the sample C, Rust and AssemblyScript modules (3–60 KB)
// compile in milliseconds.
const interpretFirst = 512 << 10

// upgrade compiles the version p put live on the interpreter and swaps the
// compiled one in for it, unless the file changed or was removed
// meanwhile, or the watcher closed.
func (w *Watcher) upgrade(p *pending) {
	defer w.upgrades.Done()
	m, err := w.h.Load(context.Background(), p.name, p.wasm)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.h.logger().Error("wasm module stays interpreted: compiling it failed", "file", p.path, "err", err)
		return
	}
	if w.closed || w.files[p.name] != p.f || p.f.mod != p.mod {
		m.release()
		return
	}
	if err := w.install(p.name, p.f, m); err != nil {
		m.release()
		w.h.logger().Error("wasm module stays interpreted: the compiled version could not replace it", "file", p.path, "err", err)
	}
}

// pending is a new version of a file on its way in.
type pending struct {
	name, path, hash string
	f                *watched
	wasm             []byte
	mod              *Module
	err              error
}

// scanFile, with w.mu held, says whether the file has a new version to
// load.
func (w *Watcher) scanFile(name string) *pending {
	path := filepath.Join(w.dir, name)
	log := w.h.logger().With("file", path)
	st, err := os.Stat(path)
	if err != nil {
		return nil // vanished between ReadDir and here; the next scan sees it gone
	}
	f := w.files[name]
	if f == nil {
		f = &watched{}
		w.files[name] = f
	}
	// Unchanged size and time skip the hash, unless the time is recent:
	// file times are coarse, and two writes within one tick look alike.
	if st.Size() == f.size && st.ModTime().Equal(f.modTime) && time.Since(st.ModTime()) > 2*time.Second {
		return nil
	}
	if st.Size() > int64(w.h.cfg.MaxModuleBytes) {
		f.size, f.modTime = st.Size(), st.ModTime()
		log.Error("wasm module rejected: too large", "bytes", st.Size(), "max", w.h.cfg.MaxModuleBytes)
		return nil
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		log.Error("wasm module unreadable", "err", err)
		return nil
	}
	f.size, f.modTime = st.Size(), st.ModTime()
	hash := Hash(wasm)
	if (f.mod != nil && f.mod.Hash() == hash) || f.rejected == hash {
		return nil
	}
	return &pending{name: name, path: path, hash: hash, f: f, wasm: wasm}
}

// load compiles (or, from interpretFirst bytes, prepares for the
// interpreter), describes and verifies p, without w.mu.
func (p *pending) load(ctx context.Context, w *Watcher) {
	p.mod, p.err = w.h.load(ctx, p.name, p.wasm, len(p.wasm) >= interpretFirst && !w.h.cfg.NoInterrupt)
	if p.err == nil {
		if p.err = w.verify(ctx, p.mod, p.path); p.err != nil {
			p.mod.release()
		}
	}
}

// finish, with w.mu held, puts a loaded version live or records its
// rejection; it reports whether p went live.
func (w *Watcher) finish(p *pending) bool {
	log := w.h.logger().With("file", p.path)
	if w.files[p.name] != p.f { // removed while it loaded
		if p.mod != nil {
			p.mod.release()
		}
		return false
	}
	err := p.err
	if err == nil {
		if err = w.install(p.name, p.f, p.mod); err != nil {
			p.mod.release()
		}
	}
	if err != nil {
		p.f.rejected = p.hash
		if p.f.mod != nil {
			log.Error("new version of a wasm module rejected; the previous version stays", "hash", shortHash(p.hash), "live", shortHash(p.f.mod.Hash()), "err", err)
		} else {
			log.Error("wasm module rejected", "hash", shortHash(p.hash), "err", err)
		}
		return false
	}
	return true
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
		old.successor.Store(m)
		old.Close()
		w.h.logger().Info("wasm module replaced", "file", name, "old", shortHash(old.Hash()), "new", shortHash(m.Hash()), "profiles", m.URIs(), "interpreted", m.interpreted)
	} else {
		w.h.logger().Info("wasm module added", "file", name, "hash", shortHash(m.Hash()), "profiles", m.URIs(), "interpreted", m.interpreted)
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
// It waits for the compiles of interpreted versions still under way, whose
// results it discards.
func (w *Watcher) Close() {
	w.mu.Lock()
	w.closed = true
	for n, f := range w.files {
		w.remove(n, f)
	}
	w.mu.Unlock()
	w.upgrades.Wait()
}
