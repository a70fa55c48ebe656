// Package stack runs the whole push2 stack on 127.0.0.1 from real parts:
// an XMPP server with the push2 bridge, and the push2d binary built from
// this tree. The server is Prosody (13 or 0.12, from Debian packages, via
// internal/prosodytest) with the bridge module from examples/prosody, or,
// with Options.Server = Ejabberd, ejabberd 24.12 (internal/ejabberdtest)
// with examples/ejabberd's module, compiled by `make ejabberd-bridge`. The
// end-to-end tests and `make demo` both use it, so the demo shows exactly
// what the tests check.
package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/push2/push2/internal/ejabberdtest"
	"github.com/push2/push2/internal/prosodytest"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// ServerKind is the XMPP server a stack runs.
type ServerKind string

const (
	// Prosody (the default) runs Options.Prosody's version.
	Prosody ServerKind = ""
	// Ejabberd runs Debian's ejabberd (bookworm-backports) with
	// examples/ejabberd/mod_push2_bridge.erl.
	Ejabberd ServerKind = "ejabberd"
)

// Server is what the tests and the demo use of either XMPP server.
type Server interface {
	Domain() string
	ComponentDomain() string
	ComponentAddr() string
	// ComponentAddrOf is where a component of Options.ExtraComponents
	// (or ComponentDomain) connects.
	ComponentAddrOf(domain string) string
	C2SAddr() string
	JID(localpart string) jid.JID
	CreateUser(localpart, password string) error
	// RegisterUser creates localpart@host on Domain or one of
	// Options.ExtraHosts.
	RegisterUser(localpart, host, password string) error
	DialClient(ctx context.Context, addr jid.JID, password string) (*xmpp.Session, error)
	Restart(ctx context.Context) error
	Kill() error
	LogPath() string
	LogTail(n int) string
	RunningVersion() string
	Close() error
}

// Options configure a stack.
type Options struct {
	// Server is the XMPP server: Prosody (default) or Ejabberd. The
	// Prosody* options apply to Prosody only; EjabberdModules to ejabberd.
	Server ServerKind
	// EjabberdModules is YAML added to ejabberd's modules: (after the
	// bridge's entry).
	EjabberdModules string
	// EjabberdBridgeOptions are mod_push2_bridge's options in
	// ejabberd.yml, one "name: value" a line (e.g.
	// "max_hibernation_timeout: 15").
	EjabberdBridgeOptions string
	// EjabberdResumeTimeout is mod_stream_mgmt's resume_timeout (the
	// counterpart of Prosody's smacks_hibernation_time).
	EjabberdResumeTimeout time.Duration
	// MUC, if set, is the domain of a groupchat (XEP-0045) service on
	// the server: Prosody's "muc" component (rooms unlocked on creation,
	// muc_room_locking = false) or ejabberd's mod_muc.
	MUC string
	// ExtraHosts are more virtual hosts of the server, without the
	// bridge (Prosody's VirtualHost with the bridge in modules_disabled,
	// ejabberd's host_config without it): their users are strangers to
	// the bridge's domain, as users of another server would be.
	// Server.RegisterUser creates accounts there.
	ExtraHosts []string
	// ExtraComponents are more XEP-0114 components of the server, each
	// with its own secret (e.g. push2relay): on Prosody's component port,
	// on ejabberd an ejabberd_service listener each
	// (Server.ComponentAddrOf).
	ExtraComponents []Component
	// Prosody is the Prosody release line to run (prosodytest.Versions).
	// Default (zero): prosodytest.Prosody012.
	Prosody prosodytest.Version
	// Log receives Prosody's and push2d's logs (nil: discarded; both are
	// kept in Dir anyway).
	Log io.Writer
	// Push2dConfig is appended to the generated push2d.toml (TOML tables
	// such as [engine]).
	Push2dConfig string
	// ProsodyConfig is Lua appended to the VirtualHost section.
	ProsodyConfig string
	// ProsodyGlobalConfig is Lua appended to Prosody's global section,
	// before the VirtualHost (e.g. another Component such as a MUC service).
	ProsodyGlobalConfig string
	// ProsodyModules are enabled in Prosody besides the bridge (global
	// modules_enabled; e.g. admin_shell and admin_socket for prosodyctl
	// shell).
	ProsodyModules []string
	// ProsodyPluginPaths are module directories searched after
	// examples/prosody (e.g. a test's own helper modules).
	ProsodyPluginPaths []string
	// ProsodyHTTPPort, if set, opens Prosody's HTTP listener on
	// 127.0.0.1 at that port (prosodytest.Options.HTTPPort).
	ProsodyHTTPPort int
	// Push2dBinary is a push2d binary to run (see BuildPush2d). Default:
	// Start builds cmd/push2d into the stack's directory.
	Push2dBinary string
	// StoreDir is push2d's store.dir (default: push2d-data in the stack's
	// directory); StoreConfig is TOML added to its [store] section.
	StoreDir    string
	StoreConfig string
	// ProsodyLogLevel is prosodytest.Options.LogLevel (default "debug");
	// Push2dLogLevel is push2d's log.level (default "debug"). Benchmarks
	// use "info".
	ProsodyLogLevel string
	Push2dLogLevel  string
	// BridgeModuleDir is a module directory holding mod_push2_bridge/ to
	// run instead of examples/prosody's (e.g. an older bridge, for a
	// before/after benchmark). Default: examples/prosody.
	BridgeModuleDir string
}

// Component is an external component (XEP-0114) of the server besides
// push2d.
type Component struct {
	Domain, Secret string
}

// Stack is a running Prosody + bridge + push2d.
type Stack struct {
	// Server is the XMPP server, whichever it is; Prosody or Ejabberd is
	// set too (the other is nil), for what only one of them has.
	Server    Server
	Prosody   *prosodytest.Server
	Ejabberd  *ejabberdtest.Server
	Dir       string
	AdminAddr string
	// AdminTokenFile holds push2d's admin token (admin.token_file); Admin
	// and AdminPost send it.
	AdminTokenFile string
	adminToken     string
	opts           Options
	binary         string
	config         string

	mu     sync.Mutex
	push2d *exec.Cmd
	exited chan struct{}
	logBuf *SyncBuffer
}

// Root returns the module's root directory (where go.mod is).
func Root() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the push2 module")
	}
	return filepath.Dir(gomod), nil
}

// BuildPush2d builds cmd/push2d into dir and returns the binary's path.
func BuildPush2d(dir string) (string, error) { return BuildCommand(dir, "push2d") }

// BuildCommand builds cmd/<name> into dir and returns the binary's path.
func BuildCommand(dir, name string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin, nil
}

// Start starts Prosody with the bridge and push2d, and waits until push2d
// is connected and the bridge has its features.
func Start(ctx context.Context, dir string, opts Options) (*Stack, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	bin := opts.Push2dBinary
	if bin == "" {
		if bin, err = BuildPush2d(dir); err != nil {
			return nil, err
		}
	}
	s := &Stack{Dir: dir, opts: opts, binary: bin, logBuf: &SyncBuffer{}}
	secretLine := ""
	switch opts.Server {
	case Prosody:
		bridgeDir := opts.BridgeModuleDir
		if bridgeDir == "" {
			bridgeDir = filepath.Join(root, "examples", "prosody")
		} else if _, err := os.Stat(filepath.Join(bridgeDir, "mod_push2_bridge", "mod_push2_bridge.lua")); err != nil {
			return nil, fmt.Errorf("stack: BridgeModuleDir %s holds no mod_push2_bridge/mod_push2_bridge.lua: %w", bridgeDir, err)
		}
		p, err := prosodytest.Start(ctx, prosodytest.Options{
			Version:          opts.Prosody,
			Dir:              filepath.Join(dir, "prosody"),
			PluginPaths:      append([]string{bridgeDir}, opts.ProsodyPluginPaths...),
			ExtraModules:     append([]string{"push2_bridge"}, opts.ProsodyModules...),
			ExtraVHostConfig: opts.ProsodyConfig,
			ExtraConfig:      prosodyMUC(opts.MUC) + opts.ProsodyGlobalConfig,
			ExtraHosts:       opts.ExtraHosts,
			ExtraComponents:  convertComponents[prosodytest.Component](opts.ExtraComponents),
			HTTPPort:         opts.ProsodyHTTPPort,
			Log:              opts.Log,
			LogLevel:         opts.ProsodyLogLevel,
		})
		if err != nil {
			return nil, err
		}
		s.Prosody, s.Server = p, p
		secretLine = fmt.Sprintf("secret = %q", p.ComponentSecret())
	case Ejabberd:
		ebin, err := BuildEjabberdBridge()
		if err != nil {
			return nil, err
		}
		e, err := ejabberdtest.Start(ctx, ejabberdtest.Options{
			Dir:             filepath.Join(dir, "ejabberd"),
			BeamDirs:        []string{ebin},
			LogLevel:        os.Getenv("PUSH2_EJABBERD_LOGLEVEL"),
			ResumeTimeout:   opts.EjabberdResumeTimeout,
			MUC:             opts.MUC,
			ExtraHosts:      opts.ExtraHosts,
			ExtraComponents: convertComponents[ejabberdtest.Component](opts.ExtraComponents),
			Modules:         bridgeYAML(opts.EjabberdBridgeOptions) + opts.EjabberdModules,
			Log:             opts.Log,
		})
		if err != nil {
			return nil, err
		}
		s.Ejabberd, s.Server = e, e
		secretLine = fmt.Sprintf("secret_file = %q", e.SecretFile())
	default:
		return nil, fmt.Errorf("stack: unknown server %q (want Prosody or Ejabberd)", opts.Server)
	}
	srv := s.Server
	admin, err := freeAddr()
	if err != nil {
		srv.Close()
		return nil, err
	}
	s.AdminAddr = admin
	if err := s.writeAdminToken(); err != nil {
		srv.Close()
		return nil, err
	}
	s.config = filepath.Join(dir, "push2d.toml")
	storeDir := opts.StoreDir
	if storeDir == "" {
		storeDir = filepath.Join(dir, "push2d-data")
	}
	push2dLevel := opts.Push2dLogLevel
	if push2dLevel == "" {
		push2dLevel = "debug"
	}
	cfg := fmt.Sprintf(`# generated by internal/stack
[component]
jid = %q
address = %q
%s
domains = [%q]
reconnect_min = "100ms"
reconnect_max = "2s"

[store]
dir = %q
%s
[admin]
listen = %q
token_file = %q

[log]
level = %q
`, srv.ComponentDomain(), srv.ComponentAddr(), secretLine, srv.Domain(), storeDir, opts.StoreConfig, admin, s.AdminTokenFile, push2dLevel)
	cfg += opts.Push2dConfig
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		srv.Close()
		return nil, err
	}
	if err := s.StartPush2d(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// StartPush2d starts the push2d process and waits until it is healthy
// (connected to Prosody).
func (s *Stack) StartPush2d(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.push2d != nil {
		return errors.New("push2d already running")
	}
	cmd := exec.Command(s.binary, "-config", s.config)
	var out io.Writer = s.logBuf
	if s.opts.Log != nil {
		out = io.MultiWriter(s.logBuf, s.opts.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.push2d, s.exited = cmd, exited
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			s.push2d = nil
			return fmt.Errorf("push2d exited during start-up:\n%s", s.logBuf.Tail(20))
		default:
		}
		if s.healthy() {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("push2d not healthy after 20s:\n%s", s.logBuf.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Stack) healthy() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + s.AdminAddr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// StopPush2d sends sig (SIGTERM for a clean stop, SIGKILL for a crash) and
// waits for the process to end.
func (s *Stack) StopPush2d(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, exited := s.push2d, s.exited
	s.push2d = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
		return errors.New("push2d did not stop within 15s of the signal; killed")
	}
}

// writeAdminToken creates the admin token file as docs/push2d.md tells an
// operator to: random, mode 0600 from the start.
func (s *Stack) writeAdminToken() error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	s.adminToken = base64.StdEncoding.EncodeToString(b[:])
	s.AdminTokenFile = filepath.Join(s.Dir, "admin.token")
	f, err := os.OpenFile(s.AdminTokenFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, s.adminToken)
	return errors.Join(err, f.Close())
}

// Admin fetches a path of push2d's admin interface, with the admin token.
func (s *Stack) Admin(path string) (string, error) {
	return s.admin("GET", path)
}

// AdminJSON fetches a path of push2d's admin interface, with the admin
// token, into v. Fields v does not have are an error, so a test reading
// the answer this way notices a renamed field (docs/push2d.md "Admin
// interface" lists them).
func (s *Stack) AdminJSON(path string, v any) error {
	body, err := s.admin("GET", path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w: %s", path, err, body)
	}
	return nil
}

// AdminPost posts to a path of push2d's admin interface, with the admin
// token and an empty JSON body.
func (s *Stack) AdminPost(path string) (string, error) {
	return s.admin("POST", path)
}

func (s *Stack) admin(method, path string) (string, error) {
	req, err := http.NewRequest(method, "http://"+s.AdminAddr+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return string(b), err
}

// Push2dPID is the process id of the running push2d, or 0.
func (s *Stack) Push2dPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.push2d == nil || s.push2d.Process == nil {
		return 0
	}
	return s.push2d.Process.Pid
}

// Push2dLog returns push2d's log so far.
func (s *Stack) Push2dLog() string { return s.logBuf.String() }

// Close stops push2d and the XMPP server.
func (s *Stack) Close() error {
	err := s.StopPush2d(syscall.SIGTERM)
	return errors.Join(err, s.Server.Close())
}

// convertComponents is cs as prosodytest's or ejabberdtest's Component.
func convertComponents[C prosodytest.Component | ejabberdtest.Component](cs []Component) []C {
	out := make([]C, len(cs))
	for i, c := range cs {
		out[i] = C(c)
	}
	return out
}

// bridgeYAML is the bridge's entry under ejabberd's modules:.
func bridgeYAML(options string) string {
	y := "mod_push2_bridge:\n    iq_timeout: 10\n"
	for _, l := range strings.Split(options, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			y += "    " + l + "\n"
		}
	}
	return y
}

// BuildEjabberdBridge runs `make ejabberd-bridge` in the module's root
// (erlc; nothing is done when the .beam is up to date) and returns the
// directory of the .beam.
func BuildEjabberdBridge() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("make", "--no-print-directory", "ejabberd-bridge")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make ejabberd-bridge: %v\n%s", err, out)
	}
	return filepath.Join(root, "build", "mod_push2_bridge", "ebin"), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// SyncBuffer is a bytes.Buffer safe for a process writing its output
// while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *SyncBuffer) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// prosodyMUC is the Prosody component of Options.MUC ("" when none).
func prosodyMUC(domain string) string {
	if domain == "" {
		return ""
	}
	return fmt.Sprintf("Component %q \"muc\"\n\tmuc_room_locking = false\n", domain)
}
