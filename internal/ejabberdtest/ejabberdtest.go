// Package ejabberdtest runs a real, private ejabberd for end-to-end tests,
// as internal/prosodytest does for Prosody.
//
// [Start] writes an ejabberd.yml into a fresh directory and starts Debian's
// ejabberd (24.12 from bookworm-backports, installed by
// scripts/install-deps.sh) as a plain Erlang node in the foreground: erl
// -noinput -s ejabberd, with EJABBERD_CONFIG_PATH, EJABBERD_LOG_PATH and
// the Mnesia spool dir pointing into that directory. The node is not
// distributed (no -sname: no epmd, no Erlang cookie, nothing on a port but
// the listeners), so it shares nothing with the system's ejabberd, which is
// never started, nor with other test nodes. Every listener is on a free
// 127.0.0.1 port: c2s (no TLS; PLAIN and SCRAM over the loopback), the
// ejabberd_service listener push2d connects to as the component
// [Options.ComponentDomain], and an ejabberd_http listener whose
// mod_http_api (only "register", "unregister", "ban_account" and
// "unban_account", only from 127.0.0.1) creates, deletes and bans
// accounts ([Server.CreateUser], [Server.DeleteUser], [Server.BanUser]). The component secret is random,
// kept in a 0600 file ([Server.SecretFile], for push2d's
// component.secret_file) and in the 0600 ejabberd.yml; the log never shows it.
//
// [Options.ExtraHosts] are more virtual hosts with the base modules only
// (not [Options.Modules]: no bridge there), and [Options.ExtraComponents]
// more external components, each on its own ejabberd_service listener
// (a free 127.0.0.1 port, [Server.ComponentAddrOf]) with its own secret.
// [Server.RegisterUser] creates accounts on any of the hosts.
//
// Modules from [Options.BeamDirs] (e.g. build/ejabberd/ebin, where `make
// ejabberd-bridge` puts the push2 bridge) are on the code path (-pa) and
// [Options.Modules] adds their ejabberd.yml entries.
package ejabberdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/push2/push2/internal/xmppclient"

	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
)

// ErrNotInstalled is wrapped by the error Start returns when ejabberd is
// not installed.
var ErrNotInstalled = errors.New("ejabberd is not installed: run scripts/install-deps.sh (as root) to install ejabberd and erlang-dev from bookworm-backports")

// LibDir is where Debian's ejabberd package keeps its Erlang applications
// (ejabberd-<version> and its dependencies): the node's ERL_LIBS.
const LibDir = "/usr/lib/x86_64-linux-gnu"

// Options configures a test server. The zero value is usable.
type Options struct {
	// Domain is the host users live on. Default "localhost".
	Domain string
	// ComponentDomain is the XEP-0114 component push2d connects as.
	// Default "push2.localhost".
	ComponentDomain string
	// ExtraHosts are more virtual hosts of the node, with the base
	// modules only: Modules and MUC are not loaded there (host_config
	// replaces the modules: option for them), so their users are
	// strangers to Domain, as users of another server would be.
	ExtraHosts []string
	// ExtraComponents are more XEP-0114 components, each on its own
	// ejabberd_service listener with its own secret.
	ExtraComponents []Component
	// BeamDirs are added to the node's code path (-pa).
	BeamDirs []string
	// Modules is YAML added under the host's modules: (indented by four
	// spaces), e.g. "mod_push2_bridge: {}".
	Modules string
	// ResumeTimeout is mod_stream_mgmt's resume_timeout (how long a
	// session that lost its connection waits for resumption). Default
	// ejabberd's (300 s).
	ResumeTimeout time.Duration
	// MUC, if set, is the domain of a XEP-0045 service (mod_muc, kept in
	// memory: rooms are created on the first join, open to every local
	// user, and gone with the node). mod_muc opens no listener: the
	// service is a route inside the node.
	MUC string
	// ExtraConfig is YAML appended at the top level of ejabberd.yml.
	ExtraConfig string
	// LogLevel is ejabberd's loglevel. Default "info" (debug costs much).
	LogLevel string
	// Log, if set, receives a copy of the node's output.
	Log io.Writer
	// Dir is the directory for config, spool and log. Default: a new
	// temporary directory, removed by Close.
	Dir string
	// StartTimeout bounds Start and Restart. Default 30s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	// Default 10s.
	StopTimeout time.Duration
}

// Component is an external component (XEP-0114) of the node.
type Component struct {
	Domain, Secret string
}

// Server is a running (or stopped) private ejabberd node.
type Server struct {
	opts       Options
	dir        string
	removeDir  bool
	configPath string
	spoolDir   string
	logPath    string
	secret     string
	secretFile string
	c2sPort    int
	compPort   int
	httpPort   int
	extraPorts []int // of Options.ExtraComponents, in order
	version    string
	mu         sync.Mutex // guards version
	proc       proctest.Process
	out        *os.File // the node's stdout and stderr
}

// MustStart is Start for tests: it fails tb if the server cannot be
// started and closes it in tb's cleanup (logging the tail of its log if tb
// failed).
func MustStart(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	s, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("ejabberdtest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("ejabberdtest: last lines of %s:\n%s", s.LogPath(), s.LogTail(80))
		}
		if err := s.Close(); err != nil {
			tb.Errorf("ejabberdtest: close: %v", err)
		}
	})
	return s
}

// Installed reports whether Debian's ejabberd (and erl) are installed.
func Installed() error {
	if _, err := exec.LookPath("erl"); err != nil {
		return fmt.Errorf("%w (no erl on PATH)", ErrNotInstalled)
	}
	m, _ := filepath.Glob(filepath.Join(LibDir, "ejabberd-[0-9]*", "ebin", "ejabberd.app"))
	if len(m) == 0 {
		return fmt.Errorf("%w (no %s/ejabberd-*/ebin/ejabberd.app)", ErrNotInstalled, LibDir)
	}
	return nil
}

// Start writes the config, starts the node on free loopback ports and
// waits until it serves XMPP on c2s, the component port and the HTTP API.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	if opts.ComponentDomain == "" {
		opts.ComponentDomain = "push2.localhost"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, secret: hex.EncodeToString(b[:])}
	var err error
	if opts.Dir == "" {
		if s.dir, err = os.MkdirTemp("", "ejabberdtest-"); err != nil {
			return nil, err
		}
		s.removeDir = true
	} else if s.dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	for i, d := range opts.BeamDirs {
		if opts.BeamDirs[i], err = filepath.Abs(d); err != nil {
			return nil, err
		}
	}
	s.configPath = filepath.Join(s.dir, "ejabberd.yml")
	s.spoolDir = filepath.Join(s.dir, "spool")
	s.logPath = filepath.Join(s.dir, "logs", "ejabberd.log")
	s.proc = proctest.Process{Name: "ejabberd", LogPath: s.logPath, StopTimeout: opts.StopTimeout}
	s.secretFile = filepath.Join(s.dir, "component.secret")
	for _, d := range []string{s.spoolDir, filepath.Dir(s.logPath)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, s.cleanupFailed(err)
		}
	}
	if err := os.WriteFile(s.secretFile, []byte(s.secret+"\n"), 0o600); err != nil {
		return nil, s.cleanupFailed(err)
	}
	if s.out, err = os.OpenFile(filepath.Join(s.dir, "erl.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err != nil {
		return nil, s.cleanupFailed(err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	const attempts = 4
	for attempt := 1; ; attempt++ {
		ports, err := proctest.FreePorts(3 + len(opts.ExtraComponents))
		if err != nil {
			return nil, s.cleanupFailed(err)
		}
		s.c2sPort, s.compPort, s.httpPort, s.extraPorts = ports[0], ports[1], ports[2], ports[3:]
		if err := os.WriteFile(s.configPath, []byte(s.config()), 0o600); err != nil {
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

// config renders ejabberd.yml.
func (s *Server) config() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Generated by github.com/push2/push2/internal/ejabberdtest. Do not edit.\n")
	w("# Private test node: loopback only, own spool, no s2s, no TLS.\n")
	w("hosts:\n")
	for _, h := range append([]string{s.opts.Domain}, s.opts.ExtraHosts...) {
		w("  - %q\n", h)
	}
	w("loglevel: %s\n", s.opts.LogLevel)
	w("log_rotate_count: 0\n")
	w("hide_sensitive_log_data: true\n")
	w("certfiles: []\n")
	w("s2s_access: none\n")
	w("auth_method: internal\n")
	w("listen:\n")
	w("  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_c2s\n    starttls: false\n    starttls_required: false\n    allow_unencrypted_sasl2: true\n", s.c2sPort)
	w("  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_service\n    hosts:\n      %q:\n        password: %q\n", s.compPort, s.opts.ComponentDomain, s.secret)
	for i, c := range s.opts.ExtraComponents {
		w("  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_service\n    hosts:\n      %q:\n        password: %q\n", s.extraPorts[i], c.Domain, c.Secret)
	}
	w("  - port: %d\n    ip: \"127.0.0.1\"\n    module: ejabberd_http\n    request_handlers:\n      /api: mod_http_api\n", s.httpPort)
	w("acl:\n  loopback:\n    ip:\n      - 127.0.0.0/8\n")
	w("api_permissions:\n  \"ejabberdtest\":\n    from:\n      - mod_http_api\n    who:\n      - acl: loopback\n    what:\n      - \"register\"\n      - \"unregister\"\n      - \"ban_account\"\n      - \"unban_account\"\n")
	base := []string{
		"mod_disco: {}", "mod_roster: {}", "mod_offline: {}",
		"mod_mam:\n      db_type: mnesia\n      default: always",
		s.streamMgmt(), "mod_carboncopy: {}", "mod_ping: {}", "mod_http_api: {}",
	}
	if len(s.opts.ExtraHosts) > 0 {
		// host_config's modules: replaces the top-level one for that host.
		w("host_config:\n")
		for _, h := range s.opts.ExtraHosts {
			w("  %q:\n    modules:\n", h)
			for _, m := range base {
				w("      %s\n", strings.ReplaceAll(m, "\n", "\n    "))
			}
		}
	}
	w("modules:\n")
	for _, m := range base {
		w("  %s\n", m)
	}
	if s.opts.MUC != "" {
		w("  mod_muc:\n      hosts:\n        - %q\n      db_type: mnesia\n      access_create: all\n", s.opts.MUC)
	}
	for _, l := range strings.Split(strings.TrimRight(s.opts.Modules, "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			w("  %s\n", l)
		}
	}
	if strings.TrimSpace(s.opts.ExtraConfig) != "" {
		w("%s\n", strings.TrimRight(s.opts.ExtraConfig, "\n"))
	}
	return b.String()
}

func (s *Server) streamMgmt() string {
	if s.opts.ResumeTimeout <= 0 {
		return "mod_stream_mgmt: {}"
	}
	return fmt.Sprintf("mod_stream_mgmt:\n      resume_timeout: %d", int(s.opts.ResumeTimeout/time.Second))
}

func (s *Server) cleanupFailed(err error) error {
	_ = s.Stop()
	if s.out != nil {
		s.out.Close()
	}
	if s.removeDir {
		os.RemoveAll(s.dir)
	}
	return err
}

var (
	errPortInUse = errors.New("port in use")
	rePort       = regexp.MustCompile(`(?m)^.*(?:eaddrinuse|Failed to open socket at).*$`)
	reStarted    = regexp.MustCompile(`ejabberd (\S+) is started in the node`)
	reFatal      = regexp.MustCompile(`(?m)^.*\[(?:critical|emergency)\].*$`)
)

// start launches the node with the existing config and waits until it is
// ready.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	s.version = ""
	s.mu.Unlock()
	args := []string{"-noinput", "-mnesia", "dir", strconv.Quote(s.spoolDir)}
	for _, d := range s.opts.BeamDirs {
		args = append(args, "-pa", d)
	}
	args = append(args, "-s", "ejabberd")
	cmd := exec.Command("erl", args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(),
		"EJABBERD_CONFIG_PATH="+s.configPath,
		"EJABBERD_LOG_PATH="+s.logPath,
		"ERL_LIBS="+LibDir,
		"HOME="+s.dir, // erl's cookie file and shell history, never the user's
	)
	var out io.Writer = s.out
	if s.opts.Log != nil {
		out = io.MultiWriter(s.out, s.opts.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done, err := s.proc.Start(cmd)
	if err != nil {
		return err
	}
	if err := s.waitReady(ctx, done); err != nil {
		_ = s.Stop()
		if errors.Is(err, errPortInUse) {
			return err
		}
		return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, s.logPath, s.LogTail(40))
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, done <-chan struct{}) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return fmt.Errorf("ejabberd exited during start-up: %v", s.proc.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("ejabberd not ready on 127.0.0.1:%d within the start timeout: %w", s.c2sPort, ctx.Err())
		case <-tick.C:
		}
		log := s.proc.CurrentLog()
		if m := rePort.FindString(log); m != "" {
			return fmt.Errorf("%w: %s", errPortInUse, strings.TrimSpace(m))
		}
		if m := reFatal.FindString(log); m != "" {
			return fmt.Errorf("ejabberd logged a critical error during start-up: %s", strings.TrimSpace(m))
		}
		m := reStarted.FindStringSubmatch(log)
		if m == nil {
			continue
		}
		ok := true
		for _, p := range append([]int{s.c2sPort, s.compPort, s.httpPort}, s.extraPorts...) {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second)
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if !ok {
			continue
		}
		s.mu.Lock()
		s.version = m[1]
		s.mu.Unlock()
		return nil
	}
}

// Stop sends SIGTERM (ejabberd shuts down cleanly on it) and waits,
// sending SIGKILL after Options.StopTimeout.
func (s *Server) Stop() error { return s.stop(syscall.SIGTERM) }

// Kill stops the node with SIGKILL, as a crash would.
func (s *Server) Kill() error { return s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig os.Signal) error { return s.proc.Stop(sig) }

// Restart stops the node if it runs and starts it again with the same
// config, spool and ports.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	return s.start(ctx)
}

// Close stops the node and removes its directory if Start created it.
func (s *Server) Close() error {
	err := s.Stop()
	if s.out != nil {
		s.out.Close()
	}
	if s.removeDir {
		if rerr := os.RemoveAll(s.dir); err == nil {
			err = rerr
		}
	}
	return err
}

// CreateUser registers localpart@Domain() through mod_http_api. An
// account that exists already is left as it is (tests log in with fixed
// passwords).
func (s *Server) CreateUser(localpart, password string) error {
	return s.RegisterUser(localpart, s.opts.Domain, password)
}

// RegisterUser registers localpart@host, host being Domain() or one of
// Options.ExtraHosts, through mod_http_api's register (what `ejabberdctl
// register user host password` runs; ejabberdctl itself cannot reach
// this node, which is not distributed). An account that exists already is
// left as it is.
func (s *Server) RegisterUser(localpart, host, password string) error {
	body, _ := json.Marshal(map[string]string{"user": localpart, "host": host, "password": password})
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post("http://"+s.HTTPAddr()+"/api/register", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("register %s@%s: %w", localpart, host, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict || bytes.Contains(out, []byte("already registered")) {
		return nil
	}
	return fmt.Errorf("register %s@%s: %s: %s", localpart, host, resp.Status, bytes.TrimSpace(out))
}

// DeleteUser removes localpart@Domain() through mod_http_api (ejabberd
// runs its remove_user hook).
func (s *Server) DeleteUser(localpart string) error {
	return s.api("unregister", map[string]string{"user": localpart, "host": s.opts.Domain}, false)
}

// BanUser bans localpart@Domain() through mod_http_api's ban_account (API
// version 2, what `ejabberdctl ban_account user host reason` runs: the
// sessions kicked, a random password, the old one kept in the account's
// private storage). It needs mod_admin_extra and mod_private in
// Options.Modules; a command that changed nothing (already banned, no
// mod_private) is an error.
func (s *Server) BanUser(localpart, reason string) error {
	return s.api("ban_account", map[string]string{"user": localpart, "host": s.opts.Domain, "reason": reason}, true)
}

// BanUserV1 bans localpart@Domain() with ban_account of API version 1
// (mod_http_api's /api/ban_account/v1): the sessions kicked and a random
// password, nothing kept, no unban. It needs mod_admin_extra.
func (s *Server) BanUserV1(localpart, reason string) error {
	return s.api("ban_account/v1", map[string]string{"user": localpart, "host": s.opts.Domain, "reason": reason}, true)
}

// UnbanUser lifts BanUser's ban (mod_http_api's unban_account: the old
// password back).
func (s *Server) UnbanUser(localpart string) error {
	return s.api("unban_account", map[string]string{"user": localpart, "host": s.opts.Domain}, true)
}

// api runs an ejabberd command through mod_http_api and fails unless it
// answered 200 and, for a command whose result is a rescode (rescode
// true), the result 0: mod_http_api answers 200 "1" when such a command
// refused (ban_account's account_was_already_banned, ...).
func (s *Server) api(command string, args map[string]string, rescode bool) error {
	body, _ := json.Marshal(args)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post("http://"+s.HTTPAddr()+"/api/"+command, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s@%s: %w", command, args["user"], args["host"], err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s@%s: %s: %s", command, args["user"], args["host"], resp.Status, bytes.TrimSpace(out))
	}
	if rescode && string(bytes.TrimSpace(out)) != "0" {
		return fmt.Errorf("%s %s@%s: refused (result %s)", command, args["user"], args["host"], bytes.TrimSpace(out))
	}
	return nil
}

// JID returns localpart@Domain().
func (s *Server) JID(localpart string) jid.JID { return jid.MustParse(localpart + "@" + s.opts.Domain) }

// DialClient logs addr in over plain TCP (loopback) with SASL and binds a
// resource, as prosodytest's DialClient does.
func (s *Server) DialClient(ctx context.Context, addr jid.JID, password string) (*xmpp.Session, error) {
	return xmppclient.Dial(ctx, xmppclient.DialOptions{Server: s.C2SAddr(), Addr: addr, Password: password, Plain: true})
}

// C2SAddr is the host:port of the client listener.
func (s *Server) C2SAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.c2sPort)) }

// ComponentAddr is the host:port of the ejabberd_service listener.
func (s *Server) ComponentAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.compPort))
}

// ComponentAddrOf is the host:port of the ejabberd_service listener of a
// component: ComponentDomain()'s, or one of Options.ExtraComponents'. ""
// for a domain that is neither.
func (s *Server) ComponentAddrOf(domain string) string {
	if domain == s.opts.ComponentDomain {
		return s.ComponentAddr()
	}
	for i, c := range s.opts.ExtraComponents {
		if c.Domain == domain {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.extraPorts[i]))
		}
	}
	return ""
}

// HTTPAddr is the host:port of the HTTP API listener.
func (s *Server) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)) }

// Domain is the host users live on.
func (s *Server) Domain() string { return s.opts.Domain }

// ComponentDomain is the component push2d connects as.
func (s *Server) ComponentDomain() string { return s.opts.ComponentDomain }

// ComponentSecret is the component's shared secret.
func (s *Server) ComponentSecret() string { return s.secret }

// SecretFile holds ComponentSecret (mode 0600), for push2d's
// component.secret_file.
func (s *Server) SecretFile() string { return s.secretFile }

// ConfigPath is the generated ejabberd.yml (mode 0600: it holds the secret).
func (s *Server) ConfigPath() string { return s.configPath }

// Dir holds config, spool and logs.
func (s *Server) Dir() string { return s.dir }

// LogPath is ejabberd's log (all runs of this server).
func (s *Server) LogPath() string { return s.logPath }

// RunningVersion is the version ejabberd logged when it last started, e.g.
// "24.12-3~bpo12+1".
func (s *Server) RunningVersion() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// PID is the process id of the running node, or 0.
func (s *Server) PID() int { return s.proc.PID() }

// LogTail returns the last n lines of the log.
func (s *Server) LogTail(n int) string { return s.proc.LogTail(n) }

// DialComponent connects to ComponentAddr() as ComponentDomain() with
// the secret (XEP-0114) and returns the session after the handshake.
func (s *Server) DialComponent(ctx context.Context) (*xmpp.Session, error) {
	addr, err := jid.Parse(s.opts.ComponentDomain)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.ComponentAddr())
	if err != nil {
		return nil, err
	}
	sess, err := component.NewSession(ctx, addr, []byte(s.secret), conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("component handshake as %s: %w", addr, err)
	}
	return sess, nil
}
