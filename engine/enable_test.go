package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/xep0357"
)

const (
	account = "juliet@capulet.lit"
	notify  = `<send xmlns="urn:xmpp:push2:send:notify-only:0"/>`
)

// newEngine returns an engine on a fresh Pebble store with the built-in
// profiles, and a settable clock.
func newEngine(t testing.TB, cfg engine.Config) (*engine.Engine, *pebblestore.Store, *time.Time) {
	t.Helper()
	store, err := pebblestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cfg.Clock = func() time.Time { return now }
	return engine.New(store, reg, cfg), store, &now
}

func enableXML(matches ...string) string {
	return `<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service>` +
		`<client>https://push.example.com/adlfkjadafdasf</client>` + strings.Join(matches, "") + `</enable>`
}

func matchXML(profile string, inner ...string) string {
	return `<match profile="urn:xmpp:push2:match:` + profile + `">` + strings.Join(inner, "") + notify + `</match>`
}

// TestEnableSpecExample: the exact example of push2.md "Client registers".
func TestEnableSpecExample(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	el := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0">
  <service>pusher@push.example.com</service>
  <client>https://push.example.com/adlfkjadafdasf</client>
  <match profile="urn:xmpp:push2:match:archived-with-body">
    <grace>144</grace>
    <filter jid="somemuc@conference.example.com">
      <mention/>
    </filter>
    <send xmlns="urn:xmpp:push2:send:notify-only:0"/>
  </match>
</enable>`)
	r, _, err := e.Enable(context.Background(), account, "balcony", el)
	if err != nil {
		t.Fatal(err)
	}
	if r.Service != "pusher@push.example.com" || r.Client != "https://push.example.com/adlfkjadafdasf" {
		t.Errorf("service/client = %q/%q", r.Service, r.Client)
	}
	if len(r.Matches) != 1 {
		t.Fatalf("matches = %d", len(r.Matches))
	}
	m := r.Matches[0]
	if m.Profile != profiles.MatchArchivedWithBody || m.Grace != 144*time.Second || m.SendNS != profiles.SendNotifyOnly {
		t.Errorf("match = %+v", m)
	}
	if len(m.Filters) != 1 || m.Filters[0] != (engine.Filter{JID: "somemuc@conference.example.com", Mention: true}) {
		t.Errorf("filters = %+v", m.Filters)
	}
	regs, err := e.Registrations(context.Background(), account)
	if err != nil || len(regs) != 1 {
		t.Fatalf("stored = %d, %v", len(regs), err)
	}
}

// TestEnableServiceForms: <service/> may be a host, bare or full JID.
func TestEnableServiceForms(t *testing.T) {
	for _, svc := range []string{"push.example.com", "pusher@push.example.com", "pusher@push.example.com/res", "juliet@capulet.lit/other-not-allowed"} {
		e, _, _ := newEngine(t, engine.Config{})
		el := stanza.MustParse(strings.Replace(enableXML(matchXML("all")), "pusher@push.example.com", svc, 1))
		_, _, err := e.Enable(context.Background(), account, "r", el)
		if strings.HasPrefix(svc, "juliet@") {
			if err == nil {
				t.Errorf("service %q (the account itself) accepted", svc)
			}
			continue
		}
		if err != nil {
			t.Errorf("service %q: %v", svc, err)
		}
	}
}

func TestEnableMalformed(t *testing.T) {
	const svc = `<service>pusher@push.example.com</service>`
	const cli = `<client>c1</client>`
	wrap := func(inner string) string { return `<enable xmlns="urn:xmpp:push2:0">` + inner + `</enable>` }
	cases := []struct {
		name, xml string
		cond      stanza.Condition
		text      string
	}{
		{"wrong element", `<disable xmlns="urn:xmpp:push2:0"/>`, "bad-request", "enable"},
		{"wrong namespace", `<enable xmlns="urn:xmpp:push:0"/>`, "bad-request", "enable"},
		// A push protocol no EnableParser is registered for is a feature
		// this server does not implement.
		{"unknown protocol", `<enable xmlns="urn:example:push"/>`, "feature-not-implemented", "urn:example:push"},
		{"no service", wrap(cli + matchXML("all")), "bad-request", "<service/>"},
		{"two services", wrap(svc + svc + cli + matchXML("all")), "bad-request", "<service/>"},
		{"empty service", wrap(`<service/>` + cli + matchXML("all")), "bad-request", "<service/>"},
		{"invalid service", wrap(`<service>a@b@c</service>` + cli + matchXML("all")), "bad-request", "<service/>"},
		{"service is the account", wrap(`<service>juliet@capulet.lit</service>` + cli + matchXML("all")), "bad-request", "account"},
		{"no client", wrap(svc + matchXML("all")), "bad-request", "<client/>"},
		{"empty client", wrap(svc + `<client>  </client>` + matchXML("all")), "bad-request", "<client/>"},
		{"two clients", wrap(svc + cli + cli + matchXML("all")), "bad-request", "<client/>"},
		{"client too long", wrap(svc + `<client>` + strings.Repeat("x", 2000) + `</client>` + matchXML("all")), "bad-request", "<client/>"},
		{"no match", wrap(svc + cli), "bad-request", "<match/>"},
		{"match without profile", wrap(svc + cli + `<match>` + notify + `</match>`), "bad-request", "profile"},
		{"unknown match profile", wrap(svc + cli + matchXML("sometimes")), "feature-not-implemented", "urn:xmpp:push2:match:sometimes"},
		{"no send", wrap(svc + cli + `<match profile="urn:xmpp:push2:match:all"/>`), "bad-request", "<send/>"},
		{"two sends", wrap(svc + cli + `<match profile="urn:xmpp:push2:match:all">` + notify + notify + `</match>`), "bad-request", "<send/>"},
		{"unknown send profile", wrap(svc + cli + `<match profile="urn:xmpp:push2:match:all"><send xmlns="urn:example:nope"/></match>`), "feature-not-implemented", "urn:example:nope"},
		{"send in push2 namespace", wrap(svc + cli + `<match profile="urn:xmpp:push2:match:all"><send/></match>`), "bad-request", "<send/>"},
		{"negative grace", wrap(svc + cli + matchXML("all", `<grace>-5</grace>`)), "bad-request", "<grace/>"},
		{"fractional grace", wrap(svc + cli + matchXML("all", `<grace>1.5</grace>`)), "bad-request", "<grace/>"},
		{"text grace", wrap(svc + cli + matchXML("all", `<grace>soon</grace>`)), "bad-request", "<grace/>"},
		{"huge grace", wrap(svc + cli + matchXML("all", `<grace>999999999</grace>`)), "bad-request", "<grace/>"},
		{"two graces", wrap(svc + cli + matchXML("all", `<grace>1</grace><grace>2</grace>`)), "bad-request", "<grace/>"},
		{"filter without jid", wrap(svc + cli + matchXML("all", `<filter><mention/></filter>`)), "bad-request", "<filter/>"},
		{"filter with invalid jid", wrap(svc + cli + matchXML("all", `<filter jid="@@"/>`)), "bad-request", "<filter"},
		{"filter unknown child", wrap(svc + cli + matchXML("all", `<filter jid="room@muc.example"><everything/></filter>`)), "bad-request", "<everything/>"},
		{"duplicate filter", wrap(svc + cli + matchXML("all", `<filter jid="room@muc.example"/><filter jid="room@muc.example"><reply/></filter>`)), "bad-request", "twice"},
		{"unexpected child", wrap(svc + cli + `<bogus/>` + matchXML("all")), "bad-request", "<bogus/>"},
		{"too many matches", wrap(svc + cli + strings.Repeat(matchXML("all"), 9)), "bad-request", "<match/>"},
	}
	if len(cases) < 20 {
		t.Fatalf("the issue asks for at least 20 malformed enables, have %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, store, _ := newEngine(t, engine.Config{})
			// With the XEP-0357 pair registered, as push2d has it (and
			// as the engine had it built in before EnableParser).
			if err := e.Registry().Register(xep0357.Set(xep0357.Options{})); err != nil {
				t.Fatal(err)
			}
			// A valid registration first: a refused enable must not touch it.
			if _, _, err := e.Enable(context.Background(), account, "r", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
				t.Fatal(err)
			}
			_, _, err := e.Enable(context.Background(), account, "r", stanza.MustParse(tc.xml))
			var se *stanza.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a stanza error", err)
			}
			if se.Condition != tc.cond || !strings.Contains(se.Text, tc.text) {
				t.Errorf("got %s %q, want %s mentioning %q", se.Condition, se.Text, tc.cond, tc.text)
			}
			stored, _ := store.Registrations(account)
			if len(stored) != 1 || !strings.Contains(stored[0].Enable, "urn:xmpp:push2:match:all") || !strings.Contains(stored[0].Enable, "<client>https://push.example.com/adlfkjadafdasf</client>") {
				t.Errorf("store changed by a refused enable: %+v", stored)
			}
		})
	}
}

func TestEnableBadAccountOrSession(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	el := stanza.MustParse(enableXML(matchXML("all")))
	for _, c := range []struct{ acct, id string }{{"not a jid@@", "r"}, {"capulet.lit", "r"}, {account, ""}} {
		if _, _, err := e.Enable(context.Background(), c.acct, c.id, el); err == nil {
			t.Errorf("Enable(%q, %q) accepted", c.acct, c.id)
		}
	}
}

func TestReEnableReplaces(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(enableXML(matchXML("important")), "adlfkjadafdasf", "second", 1)
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(second)); err != nil {
		t.Fatal(err)
	}
	regs, _ := e.Registrations(context.Background(), account)
	if len(regs) != 1 || regs[0].Matches[0].Profile != profiles.MatchImportant || !strings.HasSuffix(regs[0].Client, "second") {
		t.Fatalf("after re-enable: %d registrations, %+v", len(regs), regs)
	}
}

func TestMaxRegistrationsEvictsOldest(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{MaxRegistrations: 3})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		*now = now.Add(time.Minute)
		_, evicted, err := e.Enable(ctx, account, fmt.Sprintf("dev%d", i), stanza.MustParse(enableXML(matchXML("all"))))
		if err != nil {
			t.Fatal(err)
		}
		if want := max(0, i-2); len(evicted) != min(1, want) {
			t.Errorf("enable %d evicted %v", i, evicted)
		}
	}
	regs, _ := e.Registrations(context.Background(), account)
	var ids []string
	for _, r := range regs {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "dev2,dev3,dev4" {
		t.Errorf("kept %v, want the 3 newest", ids)
	}
	// Re-enabling an old device makes it the newest, evicting nothing.
	*now = now.Add(time.Minute)
	if _, ev, _ := e.Enable(ctx, account, "dev2", stanza.MustParse(enableXML(matchXML("all")))); len(ev) != 0 {
		t.Errorf("re-enable evicted %v", ev)
	}
}

func TestDisable(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	for _, id := range []string{"phone", "laptop"} {
		if _, _, err := e.Enable(ctx, account, id, stanza.MustParse(enableXML(matchXML("all")))); err != nil {
			t.Fatal(err)
		}
	}
	ok, err := e.Disable(ctx, account, "phone")
	if err != nil || !ok {
		t.Fatalf("Disable = %v, %v", ok, err)
	}
	regs, _ := e.Registrations(context.Background(), account)
	if len(regs) != 1 || regs[0].ID != "laptop" {
		t.Fatalf("after disable: %+v", regs)
	}
	// No push for the disabled one.
	res, err := e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/a" id="m1" type="chat"><body>hi</body></message>`), Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notifications) != 1 || res.Notifications[0].Reg.ID != "laptop" {
		t.Errorf("notifications after disable: %+v", res.Outcomes)
	}
	// Disabling again is harmless.
	if ok, err := e.Disable(ctx, account, "phone"); err != nil || ok {
		t.Errorf("second Disable = %v, %v", ok, err)
	}
}

// openDir opens an engine with the built-in profiles on a Pebble store in
// dir; the caller closes the store.
func openDir(t *testing.T, dir string) (*engine.Engine, *pebblestore.Store) {
	t.Helper()
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	return engine.New(s, reg, engine.Config{}), s
}

// TestRegistrationsSurviveRestart: a registration is on disk when Enable
// returns; a new engine on the same directory sees it.
func TestRegistrationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*engine.Engine, *pebblestore.Store) { return openDir(t, dir) }
	e, s := open()
	if _, _, err := e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("important", `<grace>30</grace>`)))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	e, s = open()
	defer s.Close()
	regs, err := e.Registrations(context.Background(), account)
	if err != nil || len(regs) != 1 {
		t.Fatalf("after restart: %d, %v", len(regs), err)
	}
	if regs[0].Matches[0].Grace != 30*time.Second || regs[0].Matches[0].Profile != profiles.MatchImportant {
		t.Errorf("restored registration differs: %+v", regs[0].Matches[0])
	}
}

// TestBase64Accepted: keys may be base64 or base64url; the engine hands
// <send/> to the profile untouched, so this is the profile's concern — here
// we only check the engine does not reject send children it does not know.
func TestSendChildrenPassedToProfile(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	el := stanza.MustParse(enableXML(`<match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"><extra>x</extra></send></match>`))
	r, _, err := e.Enable(context.Background(), account, "r", el)
	if err != nil {
		t.Fatal(err)
	}
	if r.Matches[0].Send.ChildText("", "extra") != "x" {
		t.Error("send element not kept")
	}
}

// provisionProbe is a match profile whose Provision can be made to wait for
// its context, as a WebAssembly guest stuck in push2_validate would, and
// whose Match pushes only if it is handed what Provision returned.
type provisionProbe struct {
	block atomic.Bool
	calls atomic.Int32
}

var _ engine.MatchProfile = (*provisionProbe)(nil)

const probeURI = "urn:example:probe"

func (p *provisionProbe) ID() string { return probeURI }

func (p *provisionProbe) Provision(ctx context.Context, match *stanza.Element) (any, error) {
	p.calls.Add(1)
	if p.block.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return "token:" + match.AttrValue("profile"), nil
}

func (p *provisionProbe) Match(_ context.Context, in *engine.MatchInput) (engine.Decision, error) {
	if in.Provisioned != "token:"+probeURI {
		return engine.Decision{Reason: fmt.Sprintf("provisioned %v", in.Provisioned)}, nil
	}
	return engine.Decision{Push: true}, nil
}

// TestProvisionContext: Provision runs with the caller's context at enable
// time and again when registrations are reloaded after a profile swap; a
// context that ends refuses the <enable/> with internal-server-error
// (nothing stored) and fails the reload without caching a list that lacks
// the registration. Match gets what Provision returned.
func TestProvisionContext(t *testing.T) {
	e, store, _ := newEngine(t, engine.Config{})
	probe := &provisionProbe{}
	if err := e.Registry().Update("test", []engine.MatchProfile{probe}, nil, nil); err != nil {
		t.Fatal(err)
	}
	enable := stanza.MustParse(enableXML(`<match profile="` + probeURI + `">` + notify + `</match>`))
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", enable); err != nil {
		t.Fatal(err)
	}
	res, err := e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="p1"><body>hi</body></message>`), Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}})
	if err != nil || len(res.Notifications) != 1 {
		t.Fatalf("evaluate: %v, outcomes %+v", err, res.Outcomes)
	}

	// A swap drops the parsed registrations; the next read provisions again.
	before := probe.calls.Load()
	if err := e.Registry().Update("test", []engine.MatchProfile{probe}, nil, nil); err != nil {
		t.Fatal(err)
	}
	probe.block.Store(true)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if regs, err := e.Registrations(cancelled, account); !errors.Is(err, context.Canceled) {
		t.Fatalf("reload with a cancelled context: %d registrations, err %v", len(regs), err)
	}
	if probe.calls.Load() == before {
		t.Fatal("the reload did not provision again")
	}
	probe.block.Store(false)
	if regs, err := e.Registrations(ctx, account); err != nil || len(regs) != 1 {
		t.Fatalf("after the cancelled reload: %d registrations, err %v (the failed reload was cached?)", len(regs), err)
	}

	probe.block.Store(true)
	_, _, err = e.Enable(cancelled, account, "tablet", enable)
	var se *stanza.Error
	if !errors.As(err, &se) || se.Condition != stanza.CondInternalServerError {
		t.Fatalf("enable with a cancelled context: %v, want internal-server-error", err)
	}
	if stored, _ := store.Registrations(account); len(stored) != 1 {
		t.Fatalf("%d registrations stored after a cancelled enable", len(stored))
	}
}

// lowStore is a store whose filesystem is short of space.
type lowStore struct{ engine.Store }

func (lowStore) PutRegistration(engine.StoredRegistration, int) ([]engine.RegKey, error) {
	return nil, fmt.Errorf("%w: 1024 KiB free", engine.ErrStorageLow)
}

// TestEnableStorageLow: an enable the store refuses for lack of space gets
// wait/resource-constraint with a text (the client retries later), not
// internal-server-error.
func TestEnableStorageLow(t *testing.T) {
	_, store, _ := newEngine(t, engine.Config{})
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	e := engine.New(lowStore{store}, reg, engine.Config{})
	_, _, err := e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	se, ok := stanza.AsError(err)
	if !ok || se.Type != stanza.Wait || se.Condition != stanza.CondResourceConstraint || !strings.Contains(se.Text, "storage space") {
		t.Fatalf("enable on a store short of space: %v; want wait/resource-constraint with a text", err)
	}
	if rs, _ := store.Registrations(account); len(rs) != 0 {
		t.Errorf("stored: %v", rs)
	}
}
