package host

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// NSCases is the namespace of test case files (sdk/ABI.md §13 "Test
// cases"). Case files may also use no namespace at all.
const NSCases = "urn:push2:cases:0"

// A case file is XML:
//
//	<cases xmlns='urn:push2:cases:0'>
//	  <context account='juliet@example.com' trigger='offline'/>   defaults for every case
//	  <enable xmlns='urn:xmpp:push2:0'>…</enable>                  default registration
//	  <case name='a VIP pushes high'>
//	    <enable xmlns='urn:xmpp:push2:0'>…</enable>               optional, overrides the default
//	    <context now='2024-05-01T23:30:00Z' nick='jul'/>          attributes override the defaults
//	    <activity session='laptop' seconds-ago='30'/>             optional, for <grace/>
//	    <stanza><message from='boss@example.com/x' type='chat'><body>hi</body></message></stanza>
//	    <expect push='true' priority='high' voip='false' reason='vip'>
//	      <present path='{urn:example:x}payload'/>                 under <notification/>
//	      <absent path='…'/>
//	      <text path='…' contains='…'>exact text</text>
//	      <attr path='…' name='key' value='…'/>
//	      <decrypt path='…' ua-private='base64' auth-secret='base64'>
//	        <json key='type'>message</json>
//	        <json key='body' absent='true'/>
//	        <contains>substring of the plaintext</contains>
//	      </decrypt>
//	    </expect>
//	  </case>
//	  <case name='a broken registration is refused'>
//	    <enable …/>
//	    <expect enable-error='bad-request' text='substring'/>
//	  </case>
//	</cases>
//
// Context attributes: account, trigger (offline, hibernated, ack-delayed,
// archived, groupchat), archive-id, archive-by, nick, now (RFC 3339).
// Elements inside <stanza/> with no namespace of their own are in
// jabber:client. Paths are those of push2.el_find (sdk/ABI.md §6).

// RunCases loads the module at wasmPath with a new Host and runs the test
// cases of sdk/ABI.md §13 found in casesDir (a directory of *.xml files, or one file) through a real
// engine.Engine: a temporary Pebble store, the built-in profiles
// (profiles.Builtin) and the module's profiles. It writes one line per case
// and a final "N passed, M failed" to out. err is for what prevents running
// at all (the module does not load, no cases).
//
// An empty casesDir looks, in order, for WASM.cases/ next to the module, for
// ../NAME/cases relative to it (the plugins/build layout of plugins/build.sh)
// and for cases/ next to it.
func RunCases(ctx context.Context, cfg Config, wasmPath, casesDir string, out io.Writer) (passed, failed int, err error) {
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return 0, 0, err
	}
	if casesDir == "" {
		if casesDir, err = FindCases(wasmPath); err != nil {
			return 0, 0, err
		}
	}
	h, err := New(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close(ctx)
	m, err := h.Load(ctx, filepath.Base(wasmPath), wasm)
	if err != nil {
		return 0, 0, err
	}
	return h.RunCases(ctx, m, casesDir, out)
}

// FindCases returns the cases directory for a module file, as RunCases
// looks for it.
func FindCases(wasmPath string) (string, error) {
	base := strings.TrimSuffix(wasmPath, filepath.Ext(wasmPath))
	name := filepath.Base(base)
	dir := filepath.Dir(wasmPath)
	for _, c := range []string{base + ".cases", filepath.Join(dir, "..", name, "cases"), filepath.Join(dir, "cases")} {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("no test cases for %s: give a directory, or put them in %s.cases/", wasmPath, base)
}

// RunCases runs the cases in casesDir against the loaded module m (see the
// package function RunCases).
func (h *Host) RunCases(ctx context.Context, m *Module, casesDir string, out io.Writer) (passed, failed int, err error) {
	files, err := caseFiles(casesDir)
	if err != nil {
		return 0, 0, err
	}
	tmp, err := os.MkdirTemp("", "push2-cases-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(tmp)
	store, err := engine.OpenPebble(tmp)
	if err != nil {
		return 0, 0, err
	}
	defer store.Close()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()...); err != nil {
		return 0, 0, err
	}
	if err := m.Register(reg); err != nil {
		return 0, 0, err
	}
	eng := engine.New(store, reg, engine.Config{Logger: h.cfg.Logger})
	r := &caseRunner{h: h, eng: eng, out: out}
	total := 0
	for _, f := range files {
		cs, err := parseCaseFile(f)
		if err != nil {
			return passed, failed, err
		}
		for _, c := range cs {
			total++
			c.id = "case-" + strconv.Itoa(total)
			if msg := r.run(ctx, c); msg != "" {
				failed++
				fmt.Fprintf(out, "--- FAIL: %s (%s)\n    %s\n", c.name, c.file, strings.ReplaceAll(msg, "\n", "\n    "))
			} else {
				passed++
				fmt.Fprintf(out, "--- PASS: %s (%s)\n", c.name, c.file)
			}
		}
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("no cases in %s", casesDir)
	}
	fmt.Fprintf(out, "%s: %d passed, %d failed\n", m.Name(), passed, failed)
	return passed, failed, nil
}

func caseFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{dir}, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.xml case files in %s", dir)
	}
	sort.Strings(files)
	return files, nil
}

type testCase struct {
	file, name, id string
	enable         *stanza.Element
	ctx            engine.Context
	activity       []*stanza.Element
	stanza         *stanza.Element
	expect         *stanza.Element
}

func isCasesNS(e *stanza.Element) bool { return e.Name.Space == NSCases || e.Name.Space == "" }

func parseCaseFile(path string) ([]*testCase, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	root, err := stanza.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if root.Name.Local != "cases" || !isCasesNS(root) {
		return nil, fmt.Errorf("%s: the root element must be <cases xmlns='%s'/>", path, NSCases)
	}
	name := filepath.Base(path)
	defCtx := map[string]string{"account": "juliet@example.com", "trigger": "offline"}
	var defEnable *stanza.Element
	var out []*testCase
	for _, ch := range root.Children {
		switch {
		case ch.Is(stanza.NSPush2, "enable"):
			defEnable = ch
		case ch.Name.Local == "context" && isCasesNS(ch):
			for _, a := range ch.Attr {
				defCtx[a.Name.Local] = a.Value
			}
		case ch.Name.Local == "case" && isCasesNS(ch):
			c, err := parseCase(ch, defEnable, defCtx)
			if err != nil {
				return nil, fmt.Errorf("%s: case %q: %w", path, ch.AttrValue("name"), err)
			}
			c.file = name
			out = append(out, c)
		default:
			return nil, fmt.Errorf("%s: unexpected <%s/> in <cases/>", path, ch.Name.Local)
		}
	}
	return out, nil
}

func parseCase(el *stanza.Element, defEnable *stanza.Element, defCtx map[string]string) (*testCase, error) {
	c := &testCase{name: el.AttrValue("name"), enable: defEnable}
	if c.name == "" {
		return nil, errors.New("needs a name attribute")
	}
	attrs := map[string]string{}
	for k, v := range defCtx {
		attrs[k] = v
	}
	for _, ch := range el.Children {
		switch {
		case ch.Is(stanza.NSPush2, "enable"):
			c.enable = ch
		case !isCasesNS(ch):
			return nil, fmt.Errorf("unexpected {%s}%s", ch.Name.Space, ch.Name.Local)
		case ch.Name.Local == "context":
			for _, a := range ch.Attr {
				attrs[a.Name.Local] = a.Value
			}
		case ch.Name.Local == "activity":
			c.activity = append(c.activity, ch)
		case ch.Name.Local == "stanza":
			if len(ch.Children) != 1 {
				return nil, errors.New("<stanza/> must hold exactly one element")
			}
			c.stanza = ch.Children[0].Clone()
			toClient(c.stanza)
		case ch.Name.Local == "expect":
			c.expect = ch
		default:
			return nil, fmt.Errorf("unexpected <%s/>", ch.Name.Local)
		}
	}
	if c.enable == nil {
		return nil, errors.New("no <enable xmlns='urn:xmpp:push2:0'/>, in the case or at the top of the file")
	}
	if c.expect == nil {
		return nil, errors.New("no <expect/>")
	}
	if c.stanza == nil && c.expect.AttrValue("enable-error") == "" {
		return nil, errors.New("no <stanza/>")
	}
	for k, v := range attrs {
		switch k {
		case "account":
			c.ctx.Account = v
		case "trigger":
			t, ok := engine.ParseTrigger(v)
			if !ok {
				return nil, fmt.Errorf("unknown trigger %q", v)
			}
			c.ctx.Trigger = t
		case "archive-id":
			c.ctx.ArchiveID = v
		case "archive-by":
			c.ctx.ArchiveBy = v
		case "nick":
			c.ctx.Nick = v
		case "now":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, fmt.Errorf("now: %w", err)
			}
			c.ctx.Now = t
		default:
			return nil, fmt.Errorf("unknown context attribute %q", k)
		}
	}
	return c, nil
}

// toClient puts elements that inherited the case file's namespace into
// jabber:client, as they would be in a client stream.
func toClient(e *stanza.Element) {
	if isCasesNS(e) {
		e.Name.Space = stanza.NSClient
	}
	for _, c := range e.Children {
		toClient(c)
	}
}

type caseRunner struct {
	h   *Host
	eng *engine.Engine
	out io.Writer
}

// run executes one case and returns "" or what went wrong.
func (r *caseRunner) run(ctx context.Context, c *testCase) string {
	ex := c.expect
	_, _, err := r.eng.Enable(ctx, c.ctx.Account, c.id, c.enable)
	if want := ex.AttrValue("enable-error"); want != "" {
		if err == nil {
			_, _ = r.eng.Disable(ctx, c.ctx.Account, c.id)
			return "the registration was accepted; want " + want
		}
		se := engine.AsStanzaError(err)
		if se.Condition != want {
			return fmt.Sprintf("enable error %q; want %s", err, want)
		}
		if t := ex.AttrValue("text"); t != "" && !strings.Contains(se.Text, t) {
			return fmt.Sprintf("enable error text %q does not contain %q", se.Text, t)
		}
		return ""
	}
	if err != nil {
		return "enable failed: " + err.Error()
	}
	defer r.eng.Disable(ctx, c.ctx.Account, c.id)
	now := c.ctx.Now
	if now.IsZero() {
		now = time.Now()
	}
	for _, a := range c.activity {
		secs, _ := strconv.Atoi(a.AttrValue("seconds-ago"))
		r.eng.NoteActivity(c.ctx.Account, a.AttrValue("session"), now.Add(-time.Duration(secs)*time.Second))
	}
	res, err := r.eng.Evaluate(ctx, &engine.Event{Stanza: c.stanza, Context: c.ctx, Registrations: []string{c.id}})
	if err != nil {
		return "evaluate: " + err.Error()
	}
	var outcome engine.Outcome
	for _, o := range res.Outcomes {
		if o.Reg.ID == c.id {
			outcome = o
		}
	}
	var n *engine.Notification
	for _, x := range res.Notifications {
		if x.Reg.ID == c.id {
			n = x
		}
	}
	explain := "\n(outcome: pushed=" + strconv.FormatBool(outcome.Pushed) + ", profile " + outcome.Profile + ", reason: " + outcome.Reason + ")"
	if n != nil {
		explain += "\n(notification: " + n.Stanza.String() + ")"
	}
	if v, ok := ex.LookupAttr("push"); ok {
		want, err := strconv.ParseBool(v)
		if err != nil {
			return "expect push=: " + err.Error()
		}
		if outcome.Pushed != want {
			return fmt.Sprintf("push: got %t, want %t%s", outcome.Pushed, want, explain)
		}
	}
	if v, ok := ex.LookupAttr("reason"); ok && !strings.Contains(outcome.Reason, v) {
		return fmt.Sprintf("reason %q does not contain %q%s", outcome.Reason, v, explain)
	}
	_, wantsPriority := ex.LookupAttr("priority")
	_, wantsVoIP := ex.LookupAttr("voip")
	if n == nil && (wantsPriority || wantsVoIP || len(ex.Children) > 0) {
		return "no notification to check" + explain
	}
	if v, ok := ex.LookupAttr("priority"); ok && n.Priority.String() != v {
		return fmt.Sprintf("priority: got %s, want %s%s", n.Priority, v, explain)
	}
	if v, ok := ex.LookupAttr("voip"); ok {
		want, _ := strconv.ParseBool(v)
		if n.VoIP != want {
			return fmt.Sprintf("voip: got %t, want %t%s", n.VoIP, want, explain)
		}
	}
	if n == nil {
		return ""
	}
	notif := n.Stanza.Child(stanza.NSPush2, "notification")
	for _, e := range ex.Children {
		if msg := r.check(notif, e); msg != "" {
			return msg + explain
		}
	}
	return ""
}

func (r *caseRunner) check(notif, e *stanza.Element) string {
	path := e.AttrValue("path")
	target, err := FindPath(notif, path)
	if err != nil {
		return fmt.Sprintf("<%s path=%q/>: %v", e.Name.Local, path, err)
	}
	switch e.Name.Local {
	case "present":
		if target == nil {
			return fmt.Sprintf("no element at %q", path)
		}
	case "absent":
		if target != nil {
			return fmt.Sprintf("unexpected element at %q", path)
		}
	case "text":
		if target == nil {
			return fmt.Sprintf("no element at %q", path)
		}
		if sub, ok := e.LookupAttr("contains"); ok {
			if !strings.Contains(target.Text, sub) {
				return fmt.Sprintf("text at %q: %q does not contain %q", path, target.Text, sub)
			}
		} else if target.Text != e.Text {
			return fmt.Sprintf("text at %q: got %q, want %q", path, target.Text, e.Text)
		}
	case "attr":
		if target == nil {
			return fmt.Sprintf("no element at %q", path)
		}
		got, ok := target.LookupAttr(e.AttrValue("name"))
		if !ok {
			return fmt.Sprintf("no attribute %q at %q", e.AttrValue("name"), path)
		}
		if want, ok := e.LookupAttr("value"); ok && got != want {
			return fmt.Sprintf("attribute %q at %q: got %q, want %q", e.AttrValue("name"), path, got, want)
		}
	case "decrypt":
		if target == nil {
			return fmt.Sprintf("no element at %q", path)
		}
		return r.checkDecrypt(target, e)
	default:
		return fmt.Sprintf("unknown expectation <%s/>", e.Name.Local)
	}
	return ""
}

func (r *caseRunner) checkDecrypt(target, e *stanza.Element) string {
	d, ok := r.h.cfg.Crypto.(Decrypter)
	if !ok {
		return "<decrypt/> needs a Config.Crypto that implements host.Decrypter"
	}
	body, err1 := base64.StdEncoding.DecodeString(strings.TrimSpace(target.Text))
	priv, err2 := decodeAnyBase64(e.AttrValue("ua-private"))
	auth, err3 := decodeAnyBase64(e.AttrValue("auth-secret"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return "<decrypt/>: bad base64: " + err.Error()
	}
	plain, err := d.Decrypt(priv, auth, body)
	if err != nil {
		return "<decrypt/>: " + err.Error()
	}
	var obj map[string]any
	for _, ch := range e.Children {
		switch ch.Name.Local {
		case "contains":
			if !strings.Contains(string(plain), ch.Text) {
				return fmt.Sprintf("plaintext %s does not contain %q", plain, ch.Text)
			}
		case "json":
			if obj == nil {
				dec := json.NewDecoder(strings.NewReader(string(plain)))
				dec.UseNumber()
				if err := dec.Decode(&obj); err != nil {
					return fmt.Sprintf("plaintext is not a JSON object: %v", err)
				}
			}
			key := ch.AttrValue("key")
			v, present := obj[key]
			switch {
			case ch.AttrValue("absent") == "true":
				if present {
					return fmt.Sprintf("JSON key %q present (%v); want it absent", key, v)
				}
			case !present:
				return fmt.Sprintf("JSON key %q absent from %s", key, plain)
			case ch.AttrValue("present") == "true":
			case fmt.Sprint(v) != ch.Text:
				return fmt.Sprintf("JSON key %q: got %v, want %s", key, v, ch.Text)
			}
		default:
			return fmt.Sprintf("unknown <%s/> in <decrypt/>", ch.Name.Local)
		}
	}
	return ""
}
