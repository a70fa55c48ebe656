// Package pgtest runs private PostgreSQL servers for tests: Debian's
// PostgreSQL 15 (the postgresql package, which scripts/install-deps.sh
// installs), a fresh cluster made with initdb in a temporary directory,
// listening on a free 127.0.0.1 port and on a Unix socket in that
// directory only. The system's own cluster and service are never used or
// touched.
//
// PostgreSQL refuses to run as root. When the tests run as root (CI does),
// initdb and postgres run as the unprivileged user nobody (the directory is
// handed to it); otherwise as the current user. The server is a child of
// the test process, started without pg_ctl so that it cannot outlive it:
// the kernel kills it when the test process dies (Pdeathsig), and Stop or
// the test's cleanup ends it otherwise.
//
// The superuser "push2" authenticates with a random password (SCRAM), so
// that no other local user can reach a test database; DSN carries it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBinDir is where Debian's postgresql-15 package puts initdb and
// postgres; $PUSH2_PG_BINDIR overrides it.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// ErrNotInstalled is wrapped by Start's error when initdb or postgres is
// missing.
var ErrNotInstalled = errors.New("PostgreSQL 15 is not installed: run scripts/install-deps.sh (as root) to install the postgresql package")

// BinDir returns the directory of the PostgreSQL binaries.
func BinDir() string {
	if d := os.Getenv("PUSH2_PG_BINDIR"); d != "" {
		return d
	}
	return DefaultBinDir
}

// Options configures a server. The zero value is usable.
type Options struct {
	// Durable keeps fsync and full_page_writes on, as in production (the
	// benchmarks). Off by default: tests crash processes, never the
	// machine, and a commit without fsync is still visible to a restarted
	// server.
	Durable bool
	// StartTimeout bounds Start and Restart. Default 60s.
	StartTimeout time.Duration
}

// Server is a private PostgreSQL cluster.
type Server struct {
	opts     Options
	dir      string // owned by the server's user; holds data/, the socket and the log
	dataDir  string
	logPath  string
	port     int
	password string
	cred     *syscall.Credential // nil: run as the current user

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start makes a new cluster and starts it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(BinDir(), b)); err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrNotInstalled, err)
		}
	}
	s := &Server{opts: opts}
	var err error
	if s.cred, err = runAs(); err != nil {
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "push2-pgtest-"); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(s.dir)
		}
	}()
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "postgres.log")
	var pw [16]byte
	rand.Read(pw[:])
	s.password = hex.EncodeToString(pw[:])
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(pwfile, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(BinDir(), "initdb"),
		"-D", s.dataDir, "-U", "push2", "--pwfile", pwfile, "--auth", "scram-sha-256",
		"--encoding", "UTF8", "--locale", "C", "--no-sync")
	initdb.Dir = s.dir
	initdb.SysProcAttr = s.procAttr()
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// MustStart starts a server for t and stops it (removing its directory)
// when t ends.
func MustStart(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// runAs returns the user to run PostgreSQL as: nil (the current user)
// unless that is root, then nobody.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and no user nobody to run PostgreSQL as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func (s *Server) procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
}

// freePort returns a 127.0.0.1 port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs postgres on the cluster and waits until it accepts
// connections. The first start picks a free port; a restart keeps it, so
// DSNs handed out stay valid.
func (s *Server) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	for try := 0; ; try++ {
		fresh := s.port == 0
		if fresh {
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		err := s.startOnce(ctx)
		if err == nil {
			return nil
		}
		// Someone took the port between freePort and the bind: pick another.
		if fresh && try < 5 && strings.Contains(err.Error(), "could not bind") {
			s.port = 0
			continue
		}
		return err
	}
}

func (s *Server) startOnce(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	startAt, _ := logf.Seek(0, 2)
	args := []string{"-D", s.dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(s.port),
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "max_connections=200",
		"-c", "shared_buffers=64MB",
		"-c", "logging_collector=off",
	}
	if !s.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(BinDir(), "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = s.procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("pgtest: postgres exited on start: %s", s.logSince(startAt))
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("pgtest: postgres not accepting connections: %v: %s", err, s.logSince(startAt))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) logSince(off int64) string {
	b, _ := os.ReadFile(s.logPath)
	if off < int64(len(b)) {
		b = b[off:]
	}
	return strings.TrimSpace(string(b))
}

// Log returns the server's log so far.
func (s *Server) Log() string { return s.logSince(0) }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// DSN returns a connection URL for database db as the superuser.
func (s *Server) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("push2", s.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db,
		RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDatabase makes a new, empty database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

var dbSeq struct {
	sync.Mutex
	n int
}

// NewDatabase makes a fresh database for t and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	dbSeq.Lock()
	dbSeq.n++
	name := fmt.Sprintf("t%d", dbSeq.n)
	dbSeq.Unlock()
	dsn, err := s.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Stop shuts the server down (fast shutdown: open sessions are ended,
// committed work is kept), killing it if it has not gone within 30s.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return errors.New("pgtest: postgres did not stop within 30s; killed")
	}
}

// kill ends the server at once, as a crash would.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server and starts it again on the same port and data.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start(ctx)
}

// Start starts a stopped server again on the same port and data.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return errors.New("pgtest: already running")
	}
	return s.start(ctx)
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	err := s.Stop()
	return errors.Join(err, os.RemoveAll(s.dir))
}
