package engine

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/push2/push2/engine/stanza"
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
	ID       string // the message id: a random UUID (newNotificationID)
	Priority Priority
	VoIP     bool
	Stanza   *stanza.Element // <message to=… id=…><notification xmlns='urn:xmpp:push2:0'>…
}

func (e *Engine) build(ctx context.Context, r *Registration, m *Match, st *stanza.Element, c *Context, facts *Facts, d Decision) (*Notification, error) {
	sp, ok := e.registry.Send(m.SendNS)
	if !ok {
		return nil, fmt.Errorf("send profile %q not loaded", m.SendNS)
	}
	id := newNotificationID()
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

// newNotificationID returns a fresh notification id: a random (version 4)
// UUID, 122 random bits from crypto/rand.
//
// The id is unguessable because it is what a push service's error reply
// names: anyone who could predict it could forge delivery errors and get a
// registration disabled. It is a UUID because push services pass it on as
// the request id of their platform (APNs requires a UUID there). It is
// random, not derived from the stanza: the dedupe keys (dedupeKeys) are the
// content-based identity of a push, the id only names one notification. It
// stays the same across retries because the outbox stores the notification
// with its id (OutboxEntry.ID) and resends that stanza.
func newNotificationID() string {
	var b [16]byte
	rand.Read(b[:])         // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func domainOf(account string) string {
	j, err := parseJID(account)
	if err != nil {
		return ""
	}
	return j.Domainpart()
}
