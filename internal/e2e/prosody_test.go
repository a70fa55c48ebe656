package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// The tests in this file cover what differs between Prosody versions, or
// what went wrong on one of them: the end of an extended hibernation
// (Prosody 13 and 0.12.4+ pass the watchdog to its callback), modules that
// answer the same <enable/> (mod_cloud_notify is in Prosody 13's core and
// Debian enables it), and SASL2 inline stream resumption (mod_sasl2_sm).

// sessionExpired waits until Prosody's log says that the hibernated session
// of account (any resource) was destroyed for hibernating too long, and
// returns when the test saw it (polled every 100 ms).
func sessionExpired(t *testing.T, s *stack.Stack, account string, within time.Duration) time.Time {
	t.Helper()
	// sessionmanager.destroy_session, with mod_smacks' reason; ejabberd's
	// ejabberd_c2s, with mod_stream_mgmt's.
	re := regexp.MustCompile(`Unbinding resource for ` + regexp.QuoteMeta(account) + `/\S+ .*: Hibernating too long`)
	if s.Ejabberd != nil {
		re = regexp.MustCompile(`Closing c2s session for ` + regexp.QuoteMeta(account) + `/\S+: Stream closed by local host: Timed out waiting for stream resumption`)
	}
	deadline := time.Now().Add(within)
	for {
		if b, err := os.ReadFile(s.Server.LogPath()); err == nil && re.Match(b) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hibernated session of %s was not destroyed within %s", account, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hibernatingDevice starts an xmpp.js device for local with stream
// management, registers it for pushes to token and drops its connection,
// so that Prosody hibernates the session. It returns the device and the
// time the connection was dropped.
func hibernatingDevice(t *testing.T, s *stack.Stack, local, token string) (*jsClient, time.Time) {
	t.Helper()
	c := startJS(t, s, local, jsOptions{Resource: "phone"})
	c.wait("sm-enabled", 10*time.Second, nil)
	c.send(presence())
	if resp := c.iq("set", enableFor("pusher@"+s.Server.Domain(), token)); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}
	c.do(map[string]string{"cmd": "drop"})
	return c, time.Now()
}

// TestExtendedHibernation: a hibernated session whose registration push2d
// accepted outlives smacks_hibernation_time up to
// push2_max_hibernation_timeout. Juliet's device gets no push: its session
// is destroyed when the extended timeout is over (not before, and not
// never), and a later message goes to offline storage, is pushed from
// there, and reaches the device when it logs in anew. The nurse's device
// gets a push well after smacks_hibernation_time: from that push the normal
// timeout runs again, and the session ends long before the extended one.
func TestExtendedHibernation(t *testing.T) { eachServer(t, testExtendedHibernation) }

func testExtendedHibernation(t *testing.T, p server) {
	const (
		hibernation = 3 * time.Second  // smacks_hibernation_time (ejabberd: resume_timeout)
		extended    = 15 * time.Second // push2_max_hibernation_timeout (ejabberd: max_hibernation_timeout)
	)
	s := startStack(t, p, stack.Options{ProsodyConfig: "smacks_hibernation_time = " + strconv.Itoa(int(hibernation/time.Second)) +
		"\npush2_max_hibernation_timeout = " + strconv.Itoa(int(extended/time.Second)) + "\n",
		EjabberdResumeTimeout: hibernation, EjabberdBridgeOptions: "max_hibernation_timeout: " + strconv.Itoa(int(extended/time.Second))})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	juliet, julietDropped := hibernatingDevice(t, s, "juliet", "token-juliet")
	nurse, nurseDropped := hibernatingDevice(t, s, "nurse", "token-nurse")

	// The nurse: one push, after the normal timeout would have ended the
	// session.
	time.Sleep(hibernation + 2*time.Second)
	send(t, romeo, chat("nurse@"+domain, "n1", "Wake up"))
	expectOnePush(t, pusher, "token-nurse", 0)
	pushed := time.Now()
	nurseGone := sessionExpired(t, s, "nurse@"+domain, extended)
	if d := nurseGone.Sub(pushed); d < hibernation-time.Second {
		t.Errorf("the pushed session ended %s after its push, before smacks_hibernation_time (%s)", d, hibernation)
	}
	if d := nurseGone.Sub(nurseDropped); d >= extended {
		t.Errorf("the pushed session ended %s after it hibernated: the extended timeout (%s) still ran", d, extended)
	}

	// Juliet: no push, so the extended timeout ends the session.
	julietGone := sessionExpired(t, s, "juliet@"+domain, extended+10*time.Second)
	if d := julietGone.Sub(julietDropped); d < extended {
		t.Errorf("the session without a push ended %s after it hibernated, before push2_max_hibernation_timeout (%s)", d, extended)
	}
	noNotification(t, pusher, 500*time.Millisecond) // the expiry itself pushes nothing

	offline := outcomes(s, "offline")
	send(t, romeo, chat("juliet@"+domain, "j1", "Are you still there?"))
	expectOnePush(t, pusher, "token-juliet", time.Second)
	if outcomes(s, "offline") <= offline {
		t.Errorf("the message after the extended hibernation was not reported as offline:\n%s", grep(s.Push2dLog(), "outcome"))
	}
	juliet.relogin()
	juliet.waitBody("Are you still there?", 10*time.Second)

	send(t, romeo, chat("nurse@"+domain, "n2", "And you?"))
	expectOnePush(t, pusher, "token-nurse", time.Second)
	nurse.relogin()
	nurse.waitBody("And you?", 10*time.Second)
}

// TestPushModuleConflict: next to mod_cloud_notify (XEP-0357, in Prosody
// 13's core) or the community mod_push2, both modules would answer the
// client's <enable/>, and which one does is arbitrary. The bridge refuses to
// load, whatever the order and wherever the other module is enabled, with
// an error that names the module to remove.
func TestPushModuleConflict(t *testing.T) { eachProsody(t, testPushModuleConflict) }

func testPushModuleConflict(t *testing.T, p prosodytest.Version) {
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	bridge := filepath.Join(root, "examples", "prosody")
	// A stand-in for the community mod_push2 (not packaged by Debian).
	stub := t.TempDir()
	if err := os.WriteFile(filepath.Join(stub, "mod_push2.lua"), []byte(`module:log("info", "stand-in for mod_push2 loaded");`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, other string
		modules     []string
		vhost       string
	}{
		{"cloud_notify", "cloud_notify", []string{"push2_bridge", "cloud_notify"}, ""},
		{"cloud_notify first", "cloud_notify", []string{"cloud_notify", "push2_bridge"}, ""},
		{"cloud_notify on the host", "cloud_notify", []string{"push2_bridge"}, `modules_enabled = { "cloud_notify" }`},
		{"push2", "push2", []string{"push2", "push2_bridge"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prosodytest.Start(t.Context(), prosodytest.Options{
				Version:          p,
				Dir:              t.TempDir(),
				PluginPaths:      []string{bridge, stub},
				ExtraModules:     tc.modules,
				ExtraVHostConfig: tc.vhost,
			})
			want := `remove "` + tc.other + `" from modules_enabled`
			if err == nil || !strings.Contains(err.Error(), "push2_bridge") || !strings.Contains(err.Error(), want) {
				t.Fatalf("start with %v: %v\nwant an error from loading push2_bridge saying %s", tc.modules, err, want)
			}
		})
	}
}

// lateLoader is a helper module: a message with the body "load <module>"
// sent to the host loads that module at run time, as an operator would
// with prosodyctl shell.
const lateLoader = `local modulemanager = require "core.modulemanager";
module:hook("message/host", function(event)
	local body = event.stanza:get_child_text("body");
	local name = body and body:match("^load (%S+)$");
	if not name then return; end
	module:log("info", "loading %s", name);
	modulemanager.load(module.host, name);
	return true;
end, 20);
`

// TestPushModuleLoadedLater: mod_cloud_notify loaded at run time next to
// the bridge: the bridge unloads itself and says why; the client's enable
// no longer reaches push2d.
func TestPushModuleLoadedLater(t *testing.T) { eachProsody(t, testPushModuleLoadedLater) }

func testPushModuleLoadedLater(t *testing.T, p prosodytest.Version) {
	helpers := t.TempDir()
	if err := os.WriteFile(filepath.Join(helpers, "mod_late_loader.lua"), []byte(lateLoader), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, p, stack.Options{ProsodyPluginPaths: []string{helpers}, ProsodyConfig: `modules_enabled = { "late_loader" }` + "\n"})
	domain := s.Server.Domain()
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "token-before")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable with the bridge loaded answered %s", resp)
	}

	m := stanza.NewElement(stanza.NSClient, "message", "to", domain, "id", "load")
	m.Append(stanza.NewElement(stanza.NSClient, "body").WithText("load cloud_notify"))
	send(t, juliet, m)
	waitFor(t, 10*time.Second, func() bool {
		return strings.Contains(s.Server.LogTail(-1), `unloading mod_push2_bridge: mod_cloud_notify`)
	})
	time.Sleep(500 * time.Millisecond) // the unload runs on the next timer tick

	// No module handles a Push 2.0 enable any more: Prosody answers
	// with an error, push2d never sees it.
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "token-after")); resp.AttrValue("type") != "error" {
		t.Fatalf("the enable after the unload answered %s, want an error", resp)
	}
	if n := strings.Count(s.Push2dLog(), "msg=enabled "); n != 1 {
		t.Fatalf("push2d accepted %d enables, want only the one before the unload:\n%s", n, grep(s.Push2dLog(), "enabled"))
	}
}

// TestSASL2InlineResume: a device logs in with SASL2 and Bind2 (inline
// push enable and stream management), loses its connection, and gets one
// push for a message while hibernated. Then it logs in again with SASL2:
//
//   - Prosody 13 with mod_sasl2_sm resumes the hibernated session inline,
//     in SASL2's <success/>: the device gets the queued message in the
//     resumed session, without a new enable or presence.
//   - Prosody 0.12's mod_smacks lacks the functions mod_sasl2_sm calls
//     (do_resume, do_enable), so it is not loaded: Bind2 binds a new
//     session on the same resource,
//     which replaces the hibernated one; its queue goes to offline storage
//     (reported again, not pushed again) and the message reaches the new
//     session from there.
//
// Either way the device's registration is the one SASL2 client id, there is
// exactly one push, and the device is live again: a new message is not
// pushed. (On 0.12 the device logs in as a fresh client process with the
// same client id; see the test.)
func TestSASL2InlineResume(t *testing.T) { eachProsody(t, testSASL2InlineResume) }

func testSASL2InlineResume(t *testing.T, p prosodytest.Version) {
	modules := `"sasl2"; "sasl2_bind2"`
	if p == prosodytest.Prosody13 {
		modules += `; "sasl2_sm"`
	}
	s := startStack(t, p, stack.Options{ProsodyConfig: "modules_enabled = { " + modules + " }\nsmacks_hibernation_time = 30\n"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	const clientID = "juliet-phone-1"
	juliet := startJS(t, s, "juliet", jsOptions{Resource: "Phone", ClientID: clientID, InlinePush: enableFor("pusher@"+domain, "token-resume")})
	juliet.wait("push2-inline", 10*time.Second, nil)
	juliet.wait("sm-enabled", 10*time.Second, nil)
	juliet.send(presence())
	juliet.do(map[string]string{"cmd": "drop"})
	time.Sleep(500 * time.Millisecond)
	send(t, romeo, chat("juliet@"+domain, "r1", "Resume me"))
	expectOnePush(t, pusher, "token-resume", time.Second)

	offline := outcomes(s, "offline")
	device := juliet
	if p == prosodytest.Prosody13 {
		juliet.do(map[string]string{"cmd": "reconnect"})
		juliet.wait("sasl2-resumed", 15*time.Second, nil)
		juliet.wait("resumed", 5*time.Second, nil)
		juliet.waitBody("Resume me", 10*time.Second)
	} else {
		// The app starts afresh with the same SASL2 client id. (Reconnecting
		// the same xmpp.js client tries a legacy <resume/> after Bind2, which
		// fails, and its stream management then acks with stale counters,
		// which makes Prosody close the new session.)
		device = startJS(t, s, "juliet", jsOptions{Resource: "Phone", ClientID: clientID, InlinePush: enableFor("pusher@"+domain, "token-resume")})
		device.wait("push2-inline", 10*time.Second, nil)
		device.wait("sm-enabled", 10*time.Second, nil) // see relogin
		device.send(presence())
		device.waitBody("Resume me", 10*time.Second)
		if strings.Contains(device.Log(), `"sasl2-resumed"`) {
			t.Errorf("Prosody 0.12 resumed inline, without mod_sasl2_sm")
		}
		if outcomes(s, "offline") <= offline {
			t.Errorf("the replaced session's queue was not reported as offline:\n%s", grep(s.Push2dLog(), "outcome"))
		}
	}
	if more := notifications(pusher, time.Second); len(more) > 0 {
		t.Fatalf("more pushes for one message: %v", more)
	}
	regs, err := s.Admin("/registrations?account=juliet@" + domain)
	if err != nil || strings.Count(regs, `"id": "`) != 1 || !strings.Contains(regs, `"id": "`+clientID+`"`) {
		t.Fatalf("registrations %s (%v), want only %q", regs, err, clientID)
	}

	// Live again: what the device receives itself is not pushed.
	send(t, romeo, chat("juliet@"+domain, "r2", "Now you are back"))
	device.waitBody("Now you are back", 10*time.Second)
	noNotification(t, pusher, 2*time.Second)
}
