package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/stack"
)

// mountTmpfs mounts a tmpfs of size MiB for the test and unmounts it at
// the end (after everything cleaned up later in the test, such as the
// stack). Mounting needs root, which CI has; elsewhere the test fails
// saying so rather than pass without checking anything.
func mountTmpfs(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test puts push2d's store on a %d MiB tmpfs, which only root can mount (CI runs as root); run it as root", mib)
	}
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", mib), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mount a %d MiB tmpfs on %s: %v: %s", mib, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes a file in dir until less than leave bytes are free, and
// returns its path.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 64<<10)
	for freeBytes(t, dir) >= leave {
		if _, err := f.Write(chunk); err != nil {
			t.Fatalf("filling %s: %v", dir, err)
		}
	}
	return p
}

// TestFullDisk: push2d's store on a small filesystem that fills up (a
// real tmpfs). Below store.min_free_mib a new enable is refused with
// wait/resource-constraint and a text, while push2d keeps running and
// delivering pushes of the registrations it has; with space again, enables
// are accepted again. (Before, nothing watched the space: the first
// failed write of the store made Pebble exit the process.)
func TestFullDisk(t *testing.T) { eachServer(t, testFullDisk) }

func testFullDisk(t *testing.T, p server) {
	mnt := mountTmpfs(t, 32)
	s := startStack(t, p, stack.Options{StoreDir: mnt, StoreConfig: "min_free_mib = 12\n"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	phone := login(t, s, "juliet", "phone", true)
	if resp := iq(t, phone, "set", enableWith("pusher@"+domain, "token-phone", "urn:xmpp:push2:match:all", "")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable with space: %s", resp)
	}
	phone.Close()

	filler := fill(t, mnt, 6<<20)
	laptop := login(t, s, "juliet", "laptop", true)
	resp := iq(t, laptop, "set", enableWith("pusher@"+domain, "token-laptop", "urn:xmpp:push2:match:all", ""))
	e := resp.Child("", "error")
	if resp.AttrValue("type") != "error" || e == nil || e.AttrValue("type") != "wait" || e.Child(stanza.NSStanzaError, "resource-constraint") == nil ||
		!strings.Contains(e.ChildText(stanza.NSStanzaError, "text"), "storage space") {
		t.Fatalf("enable with %d KiB free of a 12 MiB minimum: %s; want wait/resource-constraint with a text", freeBytes(t, mnt)>>10, resp)
	}
	laptop.Close()

	// Still delivering: the phone's registration gets its pushes. The
	// phone's session may take a moment to end; a message it still got
	// online gets no push, so send until one does.
	var got *stanza.Element
	for i := 0; got == nil && i < 10; i++ {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("full-%d", i), "Is the disk full?"))
		for _, n := range notifications(pusher, 2*time.Second) {
			got = n
		}
	}
	if got == nil {
		t.Fatal("no push while the store's filesystem is short of space")
	}
	if c := got.Child(stanza.NSPush2, "notification").ChildText(stanza.NSPush2, "client"); c != "token-phone" {
		t.Errorf("push for %q, want token-phone", c)
	}
	if body, err := s.Admin("/healthz"); err != nil || strings.TrimSpace(body) != "ok" {
		t.Errorf("push2d not healthy while short of space: %q %v", body, err)
	}
	if log := s.Push2dLog(); !strings.Contains(log, "free space below store.min_free_mib") {
		t.Errorf("push2d did not log the low space:\n%s", tail(log, 30))
	}

	// With space again, enables are accepted again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	laptop = login(t, s, "juliet", "laptop2", true)
	if resp := iq(t, laptop, "set", enableWith("pusher@"+domain, "token-laptop", "urn:xmpp:push2:match:all", "")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable with space again: %s", resp)
	}
}
