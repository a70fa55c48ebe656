// Package proctest runs the process of a private server for a test
// harness (internal/prosodytest, internal/ejabberdtest): one run at a time,
// stopped with a signal and, after a timeout, SIGKILL; the server's log
// file read from where the current run began, so that start-up checks never
// match a line of an earlier run.
package proctest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Process is one server's process, started again on every Start. The zero
// value with Name, LogPath and StopTimeout set is ready to use.
type Process struct {
	// Name names the server in errors ("prosody", "ejabberd").
	Name string
	// LogPath is the file the server logs to (all its runs, appended).
	LogPath string
	// StopTimeout is how long Stop waits for the process after the signal
	// before it sends SIGKILL.
	StopTimeout time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	offset  int64 // size of LogPath when the current run started
}

// Start starts cmd as the current run and returns a channel closed when it
// exits. The log of this run (CurrentLog) begins at LogPath's size now.
func (p *Process) Start(cmd *exec.Cmd) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil, fmt.Errorf("%s is already running", p.Name)
	}
	p.offset = 0
	if fi, err := os.Stat(p.LogPath); err == nil {
		p.offset = fi.Size()
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return done, nil
}

// ExitErr is what the last run's Wait returned (nil while it runs).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Stop sends sig to the current run and waits for it to exit, sending
// SIGKILL after StopTimeout. Stopping a stopped process is a no-op.
func (p *Process) Stop(sig os.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	var err error
	select {
	case <-done:
	case <-time.After(p.StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("%s did not exit within %v of %v; killed", p.Name, p.StopTimeout, sig)
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	return err
}

// Running reports whether the current run has not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is the current run's process id, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// CurrentLog is what the current run has logged so far.
func (p *Process) CurrentLog() string {
	p.mu.Lock()
	off := p.offset
	p.mu.Unlock()
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// LogTail returns the last n lines of the log (every run).
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago (all held open together, so none is returned twice).
func FreePorts(n int) ([]int, error) {
	if n <= 0 {
		return nil, errors.New("proctest: FreePorts needs n > 0")
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
