package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/stack"
)

// jsClient is a real XMPP client with XEP-0198 stream management, SASL2 and
// Bind2: xmpp.js (@xmpp/client, pinned in node/package-lock.json), run by
// node/client.mjs as a subprocess. The test sends it commands and reads its
// events, one JSON object a line (see the comment at the top of
// client.mjs). mellium, which stack.Login uses, has neither stream
// management nor SASL2.
type jsClient struct {
	t      *testing.T
	name   string
	jid    string // the full JID of the first session
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan jsEvent
	// backlog holds events read by wait that did not match, in order, for
	// later waits.
	backlog []jsEvent
	mu      sync.Mutex
	log     []string
}

// jsEvent is one line the client printed.
type jsEvent struct {
	Event   string `json:"event"`
	JID     string `json:"jid"`
	ID      string `json:"id"`
	XML     string `json:"xml"`
	Message string `json:"message"`
	Cmd     string `json:"cmd"`
}

// jsOptions configure a jsClient.
type jsOptions struct {
	Resource   string // the resource (the Bind2 tag with SASL2)
	ClientID   string // SASL2 <user-agent id=…>
	InlinePush string // an <enable/> to inline in the Bind2 request
}

var (
	nodeOnce sync.Once
	nodeDir  string
	nodeErr  error
)

// nodeClientDir returns the folder of the Node client with its
// dependencies installed (npm ci, once per test binary, when node_modules
// is missing). Without node or npm the test fails: end-to-end tests are
// never skipped.
func nodeClientDir(t *testing.T) string {
	t.Helper()
	nodeOnce.Do(func() {
		dir, err := filepath.Abs("node")
		if err != nil {
			nodeErr = err
			return
		}
		for _, bin := range []string{"node", "npm"} {
			if _, err := exec.LookPath(bin); err != nil {
				nodeErr = fmt.Errorf("%s is not installed (the end-to-end tests drive xmpp.js with Node.js >= 20.10 and npm): %v", bin, err)
				return
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@xmpp", "client", "package.json")); err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				nodeErr = fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
				return
			}
		}
		nodeDir = dir
	})
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	return nodeDir
}

// startJS creates the account if needed and starts a client logged in as
// local (password local+"-password"); it returns once the session is
// online.
func startJS(t *testing.T, s *stack.Stack, local string, o jsOptions) *jsClient {
	t.Helper()
	dir := nodeClientDir(t)
	password := local + "-password"
	if err := s.Server.CreateUser(local, password); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]string{
		"service":    "xmpp://" + s.Server.C2SAddr(),
		"domain":     s.Server.Domain(),
		"username":   local,
		"password":   password,
		"resource":   o.Resource,
		"clientId":   o.ClientID,
		"inlinePush": o.InlinePush,
	})
	cmd := exec.Command("node", "client.mjs", string(cfg))
	cmd.Dir = dir
	cmd.Stderr = &testWriter{t: t, prefix: local + "/" + o.Resource + " stderr: "}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &jsClient{t: t, name: local + "/" + o.Resource, cmd: cmd, stdin: stdin, events: make(chan jsEvent, 1024)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.log = append(c.log, line)
			c.mu.Unlock()
			var ev jsEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				continue
			}
			c.events <- ev
		}
		close(c.events)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s printed:\n%s", c.name, c.Log())
		}
	})
	c.jid = c.wait("online", 30*time.Second, nil).JID
	return c
}

// relogin reconnects a device whose session is gone: it gets a new session
// and sends presence, so its offline messages are delivered. Presence goes
// out only once stream management is on again: xmpp.js resets its inbound
// counter when it has processed <enabled/>, and stanzas that arrive before
// that would be counted twice, making it ack less than it did before (which
// Prosody answers by closing the stream).
func (c *jsClient) relogin() {
	c.t.Helper()
	c.forget("sm-enabled")
	c.do(map[string]string{"cmd": "reconnect"})
	c.wait("online", 15*time.Second, nil)
	c.wait("sm-enabled", 10*time.Second, nil)
	c.send(presence())
}

// forget drops the not yet awaited events called name, so that the next
// wait for name sees only new ones.
func (c *jsClient) forget(name string) {
	kept := c.backlog[:0]
	for _, ev := range c.backlog {
		if ev.Event != name {
			kept = append(kept, ev)
		}
	}
	c.backlog = kept
}

// Log returns everything the client printed.
func (c *jsClient) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.log, "\n")
}

func (c *jsClient) command(cmd map[string]string) {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("%s: command %s: %v", c.name, b, err)
	}
}

// do runs a command and waits until the client has carried it out.
func (c *jsClient) do(cmd map[string]string) {
	c.t.Helper()
	c.command(cmd)
	c.wait("done", 30*time.Second, func(ev jsEvent) bool { return ev.Cmd == cmd["cmd"] })
}

// send sends a stanza.
func (c *jsClient) send(el *stanza.Element) {
	c.t.Helper()
	c.do(map[string]string{"cmd": "send", "xml": string(el.Marshal())})
}

// wait returns the first event named name that satisfies match (nil: any),
// earlier unmatched events included; it fails on an "error" event or after
// within.
func (c *jsClient) wait(name string, within time.Duration, match func(jsEvent) bool) jsEvent {
	c.t.Helper()
	ok := func(ev jsEvent) bool { return ev.Event == name && (match == nil || match(ev)) }
	for i, ev := range c.backlog {
		if ok(ev) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return ev
		}
	}
	deadline := time.After(within)
	for {
		select {
		case ev, open := <-c.events:
			if !open {
				c.t.Fatalf("%s exited while waiting for %q", c.name, name)
			}
			if ev.Event == "error" && name != "error" {
				c.t.Fatalf("%s: %s", c.name, ev.Message)
			}
			if ok(ev) {
				return ev
			}
			c.backlog = append(c.backlog, ev)
		case <-deadline:
			c.t.Fatalf("%s: no %q within %s", c.name, name, within)
		}
	}
}

// waitStanza returns the next received stanza that satisfies match.
func (c *jsClient) waitStanza(within time.Duration, match func(*stanza.Element) bool) *stanza.Element {
	c.t.Helper()
	var found *stanza.Element
	c.wait("stanza", within, func(ev jsEvent) bool {
		el, err := stanza.Parse([]byte(ev.XML))
		if err != nil || !match(el) {
			return false
		}
		found = el
		return true
	})
	return found
}

// iq sends an IQ (its payload given as XML) and returns the answer.
func (c *jsClient) iq(typ, payload string) *stanza.Element {
	c.t.Helper()
	el := mustIQ(typ, payload)
	id := fmt.Sprintf("js-%d", time.Now().UnixNano())
	el.SetAttr("id", id)
	c.send(el)
	return c.waitStanza(20*time.Second, func(el *stanza.Element) bool {
		return el.Name.Local == "iq" && el.AttrValue("id") == id
	})
}

// waitBody waits until a message with body arrives.
func (c *jsClient) waitBody(body string, within time.Duration) *stanza.Element {
	c.t.Helper()
	return c.waitStanza(within, func(el *stanza.Element) bool {
		return el.Name.Local == "message" && el.ChildText("", "body") == body
	})
}

type testWriter struct {
	t      *testing.T
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(p), nil
}
