package prosodytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/internal/proctest"
)

// ErrNotInstalled is wrapped by the error Start returns when the prosody or
// prosodyctl binary cannot be found.
var ErrNotInstalled = errors.New("prosody is not installed: run scripts/install-deps.sh (as root) to install prosody and prosody-modules")

// Options configures a test server. The zero value is usable.
type Options struct {
	// Version is the Prosody release line to run. Default (zero):
	// Prosody012, the system's prosody.
	Version Version

	// Domain is the VirtualHost users live on. Default "localhost".
	Domain string
	// ComponentDomain is the XEP-0114 component push2d connects as.
	// Default "push2.localhost".
	ComponentDomain string
	// ComponentSecret is the component's shared secret. Default: random.
	ComponentSecret string

	// ExtraModules are appended to the global modules_enabled (so they are
	// loaded on the VirtualHost, not on the component).
	ExtraModules []string
	// PluginPaths are extra module directories (e.g. examples/prosody),
	// searched before the version's own module directory (Prosody's and
	// prosody-modules'). Relative paths are made
	// absolute against the current directory.
	PluginPaths []string
	// ExtraConfig is Lua appended to the global section, after the generated
	// settings, so it can override them.
	ExtraConfig string
	// ExtraVHostConfig is Lua appended inside the VirtualHost section.
	ExtraVHostConfig string
	// ExtraHosts are more VirtualHosts on the same server, with
	// DefaultModules only: ExtraModules (the bridge) are disabled on them.
	// Their users are strangers to Domain, as users of another server
	// would be (stanzas between two hosts of one Prosody take the same
	// route as from a remote server). Register accounts there with
	// [Server.RegisterUser].
	ExtraHosts []string
	// ExtraComponents are more XEP-0114 components, each with its own
	// secret, on the component port ([Server.ComponentAddrOf]).
	ExtraComponents []Component
	// HTTPPort, if set, is the port of Prosody's plain HTTP listener on
	// 127.0.0.1 (for modules that serve HTTP, e.g. mod_unified_push).
	// Default: no HTTP listener. Prosody 13 refuses a config that sets
	// http_ports twice, so ExtraConfig cannot do this.
	HTTPPort int

	// Log, if set, receives a copy of Prosody's log (debug level) as it is
	// written. The log is always kept in LogPath() too.
	Log io.Writer
	// LogLevel is the least level Prosody logs ("debug", "info", "warn",
	// "error"). Default "debug". Start waits for info-level lines, so
	// "warn" and "error" are raised to "info". Benchmarks use "info": a
	// debug log costs Prosody more CPU than the work being measured.
	LogLevel string

	// Dir is the directory for config, data and log. Default: a new
	// temporary directory, removed by Close.
	Dir string
	// StartTimeout bounds how long Start and Restart wait for the server
	// to serve XMPP. Default 30s (a context deadline may cut it shorter).
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	// Default 10s.
	StopTimeout time.Duration
}

// Component is an external component (XEP-0114) of the server.
type Component struct {
	Domain, Secret string
}

// Server is a running (or stopped) private Prosody instance.
type Server struct {
	opts       Options
	dir        string
	removeDir  bool
	configPath string
	dataDir    string
	pidFile    string
	logPath    string
	prosody    string
	prosodyctl string
	modulesDir string
	version    string // as Prosody logged it at start-up, e.g. "13.0.1"
	c2sPort    int
	compPort   int
	mu         sync.Mutex // guards version
	proc       proctest.Process
	logFile    *os.File
}

// MustStart is Start for tests: it fails tb if the server cannot be started
// and registers a cleanup that closes the server (and, if the test failed,
// logs the tail of Prosody's log).
func MustStart(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	ctx := tb.Context()
	s, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("prosodytest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("prosodytest: last lines of %s:\n%s", s.LogPath(), s.LogTail(80))
		}
		if err := s.Close(); err != nil {
			tb.Errorf("prosodytest: close: %v", err)
		}
	})
	return s
}

// Start writes a config for opts into a fresh directory, starts prosody in
// the foreground on free loopback ports and waits until it accepts XMPP
// client streams and component connections. ctx bounds only the start-up;
// the server runs until Stop or Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	if opts.ComponentDomain == "" {
		opts.ComponentDomain = "push2.localhost"
	}
	if opts.ComponentSecret == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		opts.ComponentSecret = hex.EncodeToString(b[:])
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}

	opts.Version = opts.Version.orDefault()

	s := &Server{opts: opts}
	in, err := opts.Version.locate()
	if err != nil {
		return nil, err
	}
	s.prosody, s.prosodyctl, s.modulesDir = in.prosody, in.prosodyctl, in.modulesDir

	paths := make([]string, 0, len(opts.PluginPaths)+1)
	for _, p := range opts.PluginPaths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("plugin path %s is not a directory", abs)
		}
		paths = append(paths, abs)
	}
	paths = append(paths, s.modulesDir)
	modules := append(append([]string{}, DefaultModules...), opts.ExtraModules...)
	for _, m := range opts.ExtraModules {
		if !moduleExists(m, paths) {
			return nil, fmt.Errorf("module %q not found in %s's plugin paths %v (community modules come from Debian's prosody-modules: run scripts/install-deps.sh)", m, opts.Version, paths)
		}
	}

	if opts.Dir == "" {
		if s.dir, err = os.MkdirTemp("", "prosodytest-"); err != nil {
			return nil, err
		}
		s.removeDir = true
	} else if s.dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	s.configPath = filepath.Join(s.dir, "prosody.cfg.lua")
	s.dataDir = filepath.Join(s.dir, "data")
	s.pidFile = filepath.Join(s.dir, "prosody.pid")
	s.logPath = filepath.Join(s.dir, "prosody.log")
	s.proc = proctest.Process{Name: "prosody", LogPath: s.logPath, StopTimeout: opts.StopTimeout}
	certs := filepath.Join(s.dir, "certs")
	for _, d := range []string{s.dataDir, certs} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, s.cleanupFailed(err)
		}
	}
	if s.logFile, err = os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
		return nil, s.cleanupFailed(err)
	}

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	// A port picked by listening on :0 and closing again may be taken by
	// someone else before Prosody binds it; Prosody only logs that and runs
	// on, so detect it and try again with new ports.
	const attempts = 4
	for attempt := 1; ; attempt++ {
		ports, err := proctest.FreePorts(2)
		if err != nil {
			return nil, s.cleanupFailed(err)
		}
		c2s, comp := ports[0], ports[1]
		if opts.HTTPPort != 0 && (c2s == opts.HTTPPort || comp == opts.HTTPPort) {
			continue // the caller's HTTP port was free a moment ago too
		}
		s.c2sPort, s.compPort = c2s, comp
		cfg := renderConfig(configParams{
			Dir: s.dir, DataDir: s.dataDir, PidFile: s.pidFile, CertsDir: certs,
			C2SPort: c2s, ComponentPort: comp, HTTPPort: opts.HTTPPort,
			Domain: opts.Domain, ComponentDomain: opts.ComponentDomain, Secret: opts.ComponentSecret,
			Modules: modules, PluginPaths: paths,
			ExtraConfig: opts.ExtraConfig, ExtraVHostConfig: opts.ExtraVHostConfig,
			ExtraHosts: opts.ExtraHosts, ExtraComponents: opts.ExtraComponents, ExtraModules: opts.ExtraModules,
			LogLevel: opts.LogLevel,
		})
		if err := os.WriteFile(s.configPath, []byte(cfg), 0o640); err != nil {
			return nil, s.cleanupFailed(err)
		}
		err = s.start(ctx)
		if err == nil {
			return s, nil
		}
		if errors.Is(err, errPortInUse) && attempt < attempts && ctx.Err() == nil {
			continue
		}
		return nil, s.cleanupFailed(err)
	}
}

// cleanupFailed releases what a failed Start had set up, keeping the
// directory (and its log) unless Start created it as a temporary one.
func (s *Server) cleanupFailed(err error) error {
	_ = s.Stop()
	if s.logFile != nil {
		s.logFile.Close()
	}
	if s.removeDir {
		os.RemoveAll(s.dir)
	}
	return err
}

var errPortInUse = errors.New("port in use")

var (
	// Lines in Prosody's log that mean the server is not what the test
	// asked for. Matched against the log of the current process only.
	reFatal = regexp.MustCompile(`(?m)^.*\b(?:modulemanager|portmanager)\s+error\s.*$`)
	// A port another process took, or a picked one equal to Options.HTTPPort
	// (Prosody refuses two services on one port): Start tries new ports.
	rePort = regexp.MustCompile(`(?m)^.*(?:Failed to open server port|Multiple services configured to listen on the same port).*$`)
)

// start launches prosody with the existing config and waits until it is
// ready. The caller holds no lock.
func (s *Server) start(ctx context.Context) error {
	// Stale pidfile from a SIGKILLed run: Prosody would just overwrite it
	// (it uses a lock, not existence), but remove it for clarity.
	os.Remove(s.pidFile)
	s.mu.Lock()
	s.version = ""
	s.mu.Unlock()
	fmt.Fprintf(s.logFile, "=== prosodytest: starting %s --config %s -F (c2s 127.0.0.1:%d, component 127.0.0.1:%d) at %s\n",
		s.prosody, s.configPath, s.c2sPort, s.compPort, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(s.prosody, "--config", s.configPath, "-F")
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "PROSODY_CONFIG="+s.configPath)
	var out io.Writer = s.logFile
	if s.opts.Log != nil {
		out = io.MultiWriter(s.logFile, s.opts.Log)
	}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	done, err := s.proc.Start(cmd)
	if err != nil {
		return err
	}
	err = s.waitReady(ctx, done)
	if err != nil {
		_ = s.Stop()
		if errors.Is(err, errPortInUse) {
			return err
		}
		return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, s.logPath, s.LogTail(40))
	}
	return nil
}

// waitReady polls until Prosody has bound both ports, its event loop answers
// an XMPP stream header on the c2s port, and the component port accepts
// connections; it fails early if the process exits or logs a fatal error.
func (s *Server) waitReady(ctx context.Context, done <-chan struct{}) error {
	c2sLine := fmt.Sprintf("Activated service 'c2s' on [127.0.0.1]:%d", s.c2sPort)
	compLine := fmt.Sprintf("Activated service 'component' on [127.0.0.1]:%d", s.compPort)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return fmt.Errorf("prosody exited during start-up: %v", s.proc.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("prosody not ready on 127.0.0.1:%d within the start timeout: %w", s.c2sPort, ctx.Err())
		case <-tick.C:
		}
		log := s.proc.CurrentLog()
		if m := rePort.FindString(log); m != "" {
			return fmt.Errorf("%w: %s", errPortInUse, strings.TrimSpace(m))
		}
		if m := reFatal.FindString(log); m != "" {
			return fmt.Errorf("prosody logged an error during start-up: %s", strings.TrimSpace(m))
		}
		if s.version == "" {
			if m := reHello.FindStringSubmatch(log); m != nil {
				if !s.opts.Version.matches(m[1]) {
					return fmt.Errorf("%s asked for, but %s is Prosody %s", s.opts.Version, s.prosody, m[1])
				}
				s.mu.Lock()
				s.version = m[1]
				s.mu.Unlock()
			}
		}
		if s.version == "" || !strings.Contains(log, c2sLine) || !strings.Contains(log, compLine) {
			continue
		}
		if err := probeC2S(ctx, s.C2SAddr(), s.opts.Domain); err != nil {
			continue
		}
		conn, err := net.DialTimeout("tcp", s.ComponentAddr(), time.Second)
		if err != nil {
			continue
		}
		conn.Close()
		// Errors logged while the last hosts were loading.
		if m := reFatal.FindString(s.proc.CurrentLog()); m != "" {
			return fmt.Errorf("prosody logged an error during start-up: %s", strings.TrimSpace(m))
		}
		return nil
	}
}

// probeC2S opens a client stream and waits for Prosody's stream header:
// Prosody only answers once start-up (all hosts and modules) is complete and
// its event loop runs.
func probeC2S(ctx context.Context, addr, domain string) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = fmt.Fprintf(conn, "<?xml version='1.0'?><stream:stream to=%q version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", domain)
	if err != nil {
		return err
	}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("stream:features")) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return fmt.Errorf("probe: %w (read %q)", err, got)
		}
	}
	_, _ = io.WriteString(conn, "</stream:stream>")
	return nil
}

// currentLog returns what the current process has logged so far.

// Stop sends SIGTERM and waits for Prosody to exit, sending SIGKILL after
// Options.StopTimeout. Stopping a stopped server is a no-op.
func (s *Server) Stop() error {
	return s.stop(syscall.SIGTERM)
}

// Kill stops Prosody with SIGKILL, as a crash would: no clean stream
// closes, no shutdown hooks.
func (s *Server) Kill() error {
	return s.stop(syscall.SIGKILL)
}

func (s *Server) stop(sig os.Signal) error { return s.proc.Stop(sig) }

// Restart stops the server if it runs and starts it again with the same
// config, data and ports. ctx bounds the start-up like in Start.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	return s.start(ctx)
}

// Running reports whether the Prosody process is running.
func (s *Server) Running() bool { return s.proc.Running() }

// Close stops the server and removes its directory if Start created it.
func (s *Server) Close() error {
	err := s.Stop()
	if s.logFile != nil {
		s.logFile.Close()
	}
	if s.removeDir {
		if rerr := os.RemoveAll(s.dir); err == nil {
			err = rerr
		}
	}
	return err
}

// CreateUser creates (or resets the password of) localpart@Domain() with
// prosodyctl, using the server's config and data directory. It works
// whether or not the server is running: Prosody's internal storage reads the
// account file on every login.
func (s *Server) CreateUser(localpart, password string) error {
	return s.RegisterUser(localpart, s.opts.Domain, password)
}

// RegisterUser creates (or resets the password of) localpart@host, host
// being Domain() or one of Options.ExtraHosts, with prosodyctl register.
func (s *Server) RegisterUser(localpart, host, password string) error {
	return s.Prosodyctl("register", localpart, host, password)
}

// Prosodyctl runs prosodyctl --config ConfigPath() with args and returns an
// error including its output if it fails.
func (s *Server) Prosodyctl(args ...string) error {
	cmd := exec.Command(s.prosodyctl, append([]string{"--config", s.configPath}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "PROSODY_CONFIG="+s.configPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("prosodyctl %s: %w: %s", strings.Join(redact(args), " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// redact hides the password argument of register/passwd-like commands.
func redact(args []string) []string {
	out := append([]string{}, args...)
	if len(out) == 4 && out[0] == "register" {
		out[3] = "<password>"
	}
	return out
}

// C2SAddr is the host:port of the client-to-server listener.
func (s *Server) C2SAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.c2sPort)) }

// Addr is C2SAddr.
func (s *Server) Addr() string { return s.C2SAddr() }

// ComponentAddr is the host:port of the XEP-0114 component listener.
func (s *Server) ComponentAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.compPort))
}

// ComponentAddrOf is the host:port a component of the server (its
// ComponentDomain or one of Options.ExtraComponents) connects to: Prosody
// has one component port for all.
func (s *Server) ComponentAddrOf(domain string) string { return s.ComponentAddr() }

// Domain is the VirtualHost users live on.
func (s *Server) Domain() string { return s.opts.Domain }

// Version is the release line the server was started as (Options.Version,
// defaulted).
func (s *Server) Version() Version { return s.opts.Version }

// RunningVersion is the exact version Prosody logged when it last started,
// e.g. "13.0.1" or "0.12.3".
func (s *Server) RunningVersion() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// ModulesDir is the version's own module directory (Prosody's modules and
// Debian's prosody-modules), the last of the generated plugin_paths.
func (s *Server) ModulesDir() string { return s.modulesDir }

// ComponentDomain is the configured component's domain.
func (s *Server) ComponentDomain() string { return s.opts.ComponentDomain }

// ComponentSecret is the configured component's shared secret.
func (s *Server) ComponentSecret() string { return s.opts.ComponentSecret }

// ConfigPath is the generated prosody.cfg.lua.
func (s *Server) ConfigPath() string { return s.configPath }

// DataDir is Prosody's data_path.
func (s *Server) DataDir() string { return s.dataDir }

// Dir is the directory holding config, data, pidfile and log.
func (s *Server) Dir() string { return s.dir }

// LogPath is the file Prosody's log (all runs of this server) is kept in.
func (s *Server) LogPath() string { return s.logPath }

// PID is the process id of the running Prosody, or 0.
func (s *Server) PID() int { return s.proc.PID() }

// LogTail returns the last n lines of the log.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// moduleExists reports whether Prosody's plugin loader would find module
// name in one of paths, trying the same file names as util.pluginloader. Modules
// that ship inside Prosody itself are in the version's ModulesDir too.
func moduleExists(name string, paths []string) bool {
	for _, p := range paths {
		for _, f := range []string{
			filepath.Join(p, "mod_"+name, name, "mod_"+name+".lua"),
			filepath.Join(p, "mod_"+name, "mod_"+name+".lua"),
			filepath.Join(p, name, "mod_"+name+".lua"),
			filepath.Join(p, "mod_"+name+".lua"),
		} {
			if _, err := os.Stat(f); err == nil {
				return true
			}
		}
	}
	return false
}
