package ejabberdtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/stanza"
)

// TestStartRegisterLogin starts a private node, registers a user through
// the HTTP API, logs in with a real client, and checks that the secret is
// in 0600 files only and never in the log.
func TestStartRegisterLogin(t *testing.T) {
	s := MustStart(t, Options{})
	if v := s.RunningVersion(); !strings.HasPrefix(v, "2") {
		t.Errorf("running version %q", v)
	}
	if err := s.CreateUser("juliet", "juliet-pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser("juliet", "juliet-pw"); err != nil {
		t.Fatalf("registering an existing user again: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sess, err := s.DialClient(ctx, s.JID("juliet"), "juliet-pw")
	if err != nil {
		t.Fatal(err)
	}
	if got := sess.LocalAddr().Bare().String(); got != "juliet@localhost" {
		t.Errorf("bound %s", got)
	}
	if err := sess.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	if _, err := s.DialClient(ctx, s.JID("juliet"), "wrong"); err == nil {
		t.Error("login with a wrong password succeeded")
	}
	for _, f := range []string{s.SecretFile(), s.ConfigPath()} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	if strings.Contains(s.LogTail(-1), s.ComponentSecret()) {
		t.Error("the component secret is in ejabberd's log")
	}
	c, err := s.DialComponent(ctx)
	if err != nil {
		t.Fatalf("component handshake: %v", err)
	}
	c.Close()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	sess, err = s.DialClient(ctx, s.JID("juliet"), "juliet-pw")
	if err != nil {
		t.Fatalf("login after a restart (the account is in the spool): %v", err)
	}
	sess.Close()
}

// TestBanUnban: BanUser locks the account out (mod_admin_extra's
// ban_account, version 2), a second ban is refused (the account is banned
// already), UnbanUser lets the old password in again, and unbanning an
// account that is not banned is refused.
func TestBanUnban(t *testing.T) {
	s := MustStart(t, Options{Modules: "mod_private: {}\nmod_last: {}\nmod_admin_extra: {}"})
	if err := s.CreateUser("juliet", "juliet-pw"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.BanUser("juliet", "testing"); err != nil {
		t.Fatal(err)
	}
	if sess, err := s.DialClient(ctx, s.JID("juliet"), "juliet-pw"); err == nil {
		sess.Close()
		t.Fatal("a banned account logged in")
	}
	if err := s.BanUser("juliet", "again"); err == nil {
		t.Error("banning a banned account succeeded")
	}
	if err := s.UnbanUser("juliet"); err != nil {
		t.Fatal(err)
	}
	sess, err := s.DialClient(ctx, s.JID("juliet"), "juliet-pw")
	if err != nil {
		t.Fatalf("login after the unban: %v", err)
	}
	sess.Close()
	if err := s.UnbanUser("juliet"); err == nil {
		t.Error("unbanning an account that is not banned succeeded")
	}
}
