package casetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/host"
	"github.com/push2/push2/profiles/webpush"
)

// caseRunner runs cases one after another on one engine; each case has a
// registration id of its own, removed after it ran.
type caseRunner struct {
	eng       *engine.Engine
	decrypter Decrypter // nil: <decrypt/> expectations fail
}

// run executes one case. diff is "" if it passed, else what differed from
// <expect/>; detail is what the engine decided and built, once there is an
// outcome to show.
func (r *caseRunner) run(ctx context.Context, c *testCase) (diff, detail string) {
	ex := c.expect
	_, _, err := r.eng.Enable(ctx, c.ctx.Account, c.id, c.enable)
	if want := ex.AttrValue("enable-error"); want != "" {
		if err == nil {
			_, _ = r.eng.Disable(ctx, c.ctx.Account, c.id)
			return "the registration was accepted; want " + want, ""
		}
		se := engine.AsStanzaError(err)
		if string(se.Condition) != want {
			return fmt.Sprintf("enable error %q; want %s", err, want), ""
		}
		if t := ex.AttrValue("text"); t != "" && !strings.Contains(se.Text, t) {
			return fmt.Sprintf("enable error text %q does not contain %q", se.Text, t), ""
		}
		return "", ""
	}
	if err != nil {
		return "enable failed: " + err.Error(), ""
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
		return "evaluate: " + err.Error(), ""
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
	detail = "(outcome: pushed=" + strconv.FormatBool(outcome.Pushed) + ", profile " + outcome.Profile + ", reason: " + outcome.Reason + ")"
	if n != nil {
		detail += "\n(notification: " + n.Stanza.String() + ")"
	}
	return r.compare(ex, outcome, n), detail
}

// compare checks the outcome and notification against <expect/>.
func (r *caseRunner) compare(ex *stanza.Element, outcome engine.Outcome, n *engine.Notification) string {
	if v, ok := ex.LookupAttr("push"); ok {
		want, err := strconv.ParseBool(v)
		if err != nil {
			return "expect push=: " + err.Error()
		}
		if outcome.Pushed != want {
			return fmt.Sprintf("push: got %t, want %t", outcome.Pushed, want)
		}
	}
	if v, ok := ex.LookupAttr("reason"); ok && !strings.Contains(outcome.Reason, v) {
		return fmt.Sprintf("reason %q does not contain %q", outcome.Reason, v)
	}
	_, wantsPriority := ex.LookupAttr("priority")
	_, wantsVoIP := ex.LookupAttr("voip")
	if n == nil && (wantsPriority || wantsVoIP || len(ex.Children) > 0) {
		return "no notification to check"
	}
	if v, ok := ex.LookupAttr("priority"); ok && n.Priority.String() != v {
		return fmt.Sprintf("priority: got %s, want %s", n.Priority, v)
	}
	if v, ok := ex.LookupAttr("voip"); ok {
		want, _ := strconv.ParseBool(v)
		if n.VoIP != want {
			return fmt.Sprintf("voip: got %t, want %t", n.VoIP, want)
		}
	}
	if n == nil {
		return ""
	}
	notif := n.Stanza.Child(stanza.NSPush2, "notification")
	for _, e := range ex.Children {
		if msg := r.check(notif, e); msg != "" {
			return msg
		}
	}
	return ""
}

func (r *caseRunner) check(notif, e *stanza.Element) string {
	path := e.AttrValue("path")
	target, err := host.FindPath(notif, path)
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
	d := r.decrypter
	if d == nil {
		return "<decrypt/> needs a host.Config.Crypto that implements casetest.Decrypter"
	}
	body, err1 := base64.StdEncoding.DecodeString(strings.TrimSpace(target.Text))
	priv, err2 := webpush.DecodeBase64(e.AttrValue("ua-private"))
	auth, err3 := webpush.DecodeBase64(e.AttrValue("auth-secret"))
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
