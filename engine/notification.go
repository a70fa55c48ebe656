package engine

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/xmpp/jid"
)

// The last step of the pipeline: the send profile writes the content of
// the <notification/> (push2.md "Push service interactions") and the
// engine wraps it in the <message/> to the push service, within
// Config.NotificationLimit.

// Notification is a push ready to be sent: a <message/> to the push
// service.
type Notification struct {
	Reg      RegKey
	To       string
	ID       string // the message id, stable for a registration and stanza
	Priority Priority
	VoIP     bool
	Stanza   *stanza.Element // <message to=… id=…><notification xmlns='urn:xmpp:push2:0'>…
}

func (e *Engine) build(ctx context.Context, r *Registration, m *Match, st *stanza.Element, c *Context, facts *Facts, d Decision, keys []string) (*Notification, error) {
	sp, ok := e.registry.Send(m.SendNS)
	if !ok {
		return nil, fmt.Errorf("send profile %q not loaded", m.SendNS)
	}
	id := notificationID(r.Key(), keys)
	if sb, ok := sp.(StanzaBuilder); ok {
		st, err := sb.BuildStanza(ctx, &SendInput{Stanza: st, Context: c, Decision: d, Send: m.Send, Provisioned: m.SendProvisioned, Budget: e.cfg.NotificationLimit, facts: facts}, r, id)
		if err != nil {
			return nil, err
		}
		if size := st.Size(); size > e.cfg.NotificationLimit {
			return nil, fmt.Errorf("notification is %d bytes, over the %d-byte limit", size, e.cfg.NotificationLimit)
		}
		return &Notification{Reg: r.Key(), To: r.Service, ID: id, Priority: d.Priority, VoIP: d.VoIP, Stanza: st}, nil
	}
	msg, notif := envelope(r, id, d.Priority, d.VoIP)
	budget := e.cfg.NotificationLimit - msg.Size()
	children, err := sp.Send(ctx, &SendInput{Stanza: st, Context: c, Decision: d, Send: m.Send, Provisioned: m.SendProvisioned, Budget: budget, facts: facts})
	if err != nil {
		return nil, err
	}
	notif.Append(children...)
	if size := msg.Size(); size > e.cfg.NotificationLimit {
		return nil, fmt.Errorf("notification is %d bytes, over the %d-byte limit", size, e.cfg.NotificationLimit)
	}
	return &Notification{Reg: r.Key(), To: r.Service, ID: id, Priority: d.Priority, VoIP: d.VoIP, Stanza: msg}, nil
}

// envelope returns the <message/> to the push service and its
// <notification/> with the engine's children (push2.md "Push service
// interactions": <client/>, <priority/>, <voip/> for calls); the send
// profile's children go after them.
func envelope(r *Registration, id string, p Priority, voip bool) (msg, notif *stanza.Element) {
	msg = stanza.NewElement(stanza.NSClient, "message", "to", r.Service, "from", domainOf(r.Account), "id", id)
	notif = stanza.NewElement(stanza.NSPush2, "notification")
	notif.Append(
		stanza.NewElement(stanza.NSPush2, "client").WithText(r.Client),
		stanza.NewElement(stanza.NSPush2, "priority").WithText(p.String()),
	)
	if voip {
		notif.Append(stanza.NewElement(stanza.NSPush2, "voip"))
	}
	msg.Append(notif)
	return msg, notif
}

// notificationID is stable for a registration and a stanza, so a retried
// notification keeps its id and a push service can drop duplicates.
func notificationID(k RegKey, keys []string) string {
	h := sha256.Sum256([]byte(k.Account + "\x00" + k.ID + "\x00" + keys[0]))
	return "push2-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:15]))
}

func domainOf(account string) string {
	j, err := jid.Parse(account)
	if err != nil {
		return ""
	}
	return j.Domainpart()
}
