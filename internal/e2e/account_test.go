package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// TestAccountLifecycle (issue 13, Build 2; issue 15 for ejabberd): the
// operator deletes an account (Prosody 0.12 and 13: prosodyctl shell user
// delete, user-deleted; ejabberd: mod_http_api's unregister, its
// remove_user hook) and, on Prosody 13 and ejabberd, disables and enables
// one (Prosody 13: prosodyctl shell user disable/enable, user-disabled and
// user-enabled; ejabberd: mod_http_api's ban_account, API version 2, and
// unban_account, seen by the bridge through the api_call hook). A
// disabled account's registrations stay, suspended (admin /registrations
// says so): a message stored for it gets no push; enabled again, the next
// one does. On ejabberd, ban_account of API version 1 (a random password,
// nothing kept, no unban) disables the account too, for good. A deleted
// account's registrations are gone. Prosody 0.12 has no disabled accounts.
func TestAccountLifecycle(t *testing.T) { eachServer(t, testAccountLifecycle) }

func testAccountLifecycle(t *testing.T, p server) {
	// A short socket path: the test's directory may be longer than a Unix
	// socket address allows.
	sock, err := os.MkdirTemp("", "p2sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	s := startStack(t, p, stack.Options{
		ProsodyModules:      []string{"admin_shell", "admin_socket"},
		ProsodyGlobalConfig: `admin_socket = "` + filepath.Join(sock, "s") + `"`,
		// ban_account and unban_account (mod_admin_extra) keep the ban in
		// private storage and record the last activity.
		EjabberdModules: "mod_private: {}\nmod_last: {}\nmod_admin_extra: {}\n",
	})
	domain := s.Server.Domain()
	shell := func(args ...string) {
		t.Helper()
		if p == ejabberd {
			var err error
			switch {
			case len(args) == 3 && args[0] == "user" && args[1] == "delete":
				err = s.Ejabberd.DeleteUser(strings.TrimSuffix(args[2], "@"+domain))
			case len(args) == 3 && args[0] == "user" && args[1] == "disable":
				err = s.Ejabberd.BanUser(strings.TrimSuffix(args[2], "@"+domain), "TestAccountLifecycle")
			case len(args) == 3 && args[0] == "user" && args[1] == "enable":
				err = s.Ejabberd.UnbanUser(strings.TrimSuffix(args[2], "@"+domain))
			default:
				t.Fatalf("no ejabberd counterpart of prosodyctl shell %v", args)
			}
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := s.Prosody.Prosodyctl(append([]string{"shell"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	type reg struct {
		ID        string `json:"id"`
		Suspended bool   `json:"suspended"`
	}
	// waitRegs waits until the account's registrations are as ok wants
	// (the bridge tells push2d after Prosody's event).
	waitRegs := func(account string, what string, ok func([]reg) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var regs []reg
			raw, err := s.Admin("/registrations?account=" + account)
			if err == nil {
				err = json.Unmarshal([]byte(raw), &regs)
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok(regs) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("registrations of %s: %s, want %s", account, raw, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	pusher, romeo := offlineWithRegistration(t, s, "token-juliet")
	juliet := "juliet@" + domain
	waitRegs(juliet, "one", func(r []reg) bool { return len(r) == 1 && !r[0].Suspended })

	if p == ejabberd || p.prosody == prosodytest.Prosody13 {
		shell("user", "disable", juliet)
		waitRegs(juliet, "one, suspended", func(r []reg) bool { return len(r) == 1 && r[0].Suspended })
		send(t, romeo, chat(juliet, "dis1", "while disabled"))
		noNotification(t, pusher, 3*time.Second)

		shell("user", "enable", juliet)
		waitRegs(juliet, "one, not suspended", func(r []reg) bool { return len(r) == 1 && !r[0].Suspended })
		send(t, romeo, chat(juliet, "en1", "enabled again"))
		if n := waitNotification(t, pusher, 15*time.Second); clientOf(n) != "token-juliet" {
			t.Fatalf("notification for %q", clientOf(n))
		}
	}
	if p == ejabberd {
		// ban_account of API version 1 (a random password, no unban):
		// disabled for good, until the account is deleted below.
		if err := s.Ejabberd.BanUserV1("juliet", "TestAccountLifecycle v1"); err != nil {
			t.Fatal(err)
		}
		waitRegs(juliet, "one, suspended", func(r []reg) bool { return len(r) == 1 && r[0].Suspended })
		send(t, romeo, chat(juliet, "v1", "banned (API version 1)"))
		noNotification(t, pusher, 3*time.Second)
	}

	shell("user", "delete", juliet)
	waitRegs(juliet, "none", func(r []reg) bool { return len(r) == 0 })
	// Another account's registration is untouched.
	nurse := login(t, s, "nurse", "phone", true)
	if resp := iq(t, nurse, "set", enableFor("pusher@"+domain, "token-nurse")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	shell("user", "delete", "romeo@"+domain)
	waitRegs("nurse@"+domain, "one", func(r []reg) bool { return len(r) == 1 })
}
