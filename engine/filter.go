package engine

import (
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// Filter is a <filter jid=…/> of a <match/> (push2.md "Client registers to
// receive push notifications", <filter/>): pushes from that chat happen only
// on a mention or a reply as its children say; no child means muted.
type Filter struct {
	JID     string // normalized bare JID
	Mention bool
	Reply   bool
}

// muted reports whether the filter lets nothing through.
func (f Filter) muted() bool { return !f.Mention && !f.Reply }

func parseFilter(el *stanza.Element) (Filter, error) {
	raw, ok := el.LookupAttr("jid")
	if !ok {
		return Filter{}, stanza.BadRequest("<filter/> needs a 'jid' attribute")
	}
	j, err := NormalizeJID(raw)
	if err != nil || strings.TrimSpace(raw) == "" {
		return Filter{}, stanza.BadRequest("<filter jid=…/> is not a valid JID")
	}
	f := Filter{JID: j.Bare().String()}
	for _, c := range el.Children {
		switch {
		case c.Is(stanza.NSPush2, "mention"):
			f.Mention = true
		case c.Is(stanza.NSPush2, "reply"):
			f.Reply = true
		case c.Name.Space == stanza.NSPush2:
			return Filter{}, stanza.BadRequest("unexpected element <%s/> in <filter/>", c.Name.Local)
		}
	}
	return f, nil
}

// applyFilters is the filter step: a filter for the stanza's chat lets it
// through only on a mention or a reply, as its children say; a filter
// without children mutes the chat. Chats without a filter pass. The chat,
// mention and reply come from the stanza's facts (facts.go).
func applyFilters(filters []Filter, facts *Facts) (string, bool) {
	for _, f := range filters {
		if f.JID != facts.Chat {
			continue
		}
		switch {
		case f.muted():
			return "filter: " + f.JID + " is muted", false
		case f.Mention && facts.Mention, f.Reply && facts.Reply:
			return "", true
		default:
			return "filter: " + f.JID + " pushes only " + filterWants(f), false
		}
	}
	return "", true
}

func filterWants(f Filter) string {
	switch {
	case f.Mention && f.Reply:
		return "mentions and replies"
	case f.Mention:
		return "mentions"
	default:
		return "replies"
	}
}
