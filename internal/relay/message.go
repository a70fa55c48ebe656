package relay

import (
	"context"
	"slices"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// Senders is the allow-list of XMPP domains whose notifications a relay
// serving a component JID accepts (push2.md "Push notifications": a
// notification comes from the user's server, its bare domain). A relay
// that relays for anyone is a free VAPID-signed HTTP client for the whole
// network; the list is explicit, and empty means nobody.
type Senders []string

// Allows reports whether from (a JID string) is on a listed domain.
func (s Senders) Allows(from string) bool {
	d := from
	if i := strings.IndexByte(d, '/'); i >= 0 {
		d = d[:i]
	}
	if strings.Contains(d, "@") {
		return false // a notification comes from a server, not an account
	}
	return d != "" && slices.Contains(s, strings.ToLower(d))
}

// HandleMessage serves one <message/> addressed to the relay's JID (me):
// a notification from an allowed server is pushed, and the answer is the
// error <message/> to send back (push2.md: a push service reports a failed
// notification with a stanza error on the notification's message, same
// id), or nil when the push service took it or there is nothing to
// answer (an error message, a message without a notification).
func (r *Relay) HandleMessage(ctx context.Context, me string, allowed Senders, msg *stanza.Element) *stanza.Element {
	if msg.AttrValue("type") == "error" {
		return nil // never answer an error with an error
	}
	n := msg.Child(stanza.NSPush2, "notification")
	if n == nil {
		return nil
	}
	from := msg.AttrValue("from")
	var se *stanza.Error
	if !allowed.Allows(from) {
		r.log.Warn("relay: notification from a server that is not allowed to use this relay", "from", from)
		se = stanza.NewError(stanza.Cancel, stanza.CondNotAllowed, "this relay does not relay for %s; its operator can add the domain to the relay's senders", truncate(from, 64))
		if r.cfg.Observe != nil {
			r.cfg.Observe("refused", 0)
		}
	} else {
		se = r.Push(ctx, n).Err
	}
	if se == nil {
		return nil
	}
	return ErrorReply(me, msg, se)
}

// ErrorReply is the error answer to a notification message: to its sender,
// with its id, carrying the error (RFC 6120 §8.2: the original payload may
// be left out, and is, so no payload travels back).
func ErrorReply(me string, msg *stanza.Element, se *stanza.Error) *stanza.Element {
	out := stanza.NewElement(stanza.NSClient, "message", "from", me, "to", msg.AttrValue("from"), "id", msg.AttrValue("id"), "type", "error")
	return out.Append(se.Element())
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
