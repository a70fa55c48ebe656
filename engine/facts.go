package engine

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/xmpp/jid"
)

// CallAction is what a Jingle Message Initiation (XEP-0353) element asks.
type CallAction string

// Call actions that matter for pushes.
const (
	CallNone    CallAction = ""
	CallPropose CallAction = "propose" // ring: high priority and <voip/>
	CallRetract CallAction = "retract" // stop ringing: urgent, but never voip
	CallOther   CallAction = "other"   // accept, proceed, reject, finish
)

// Facts are what the built-in profiles and the filters need to know about a
// stanza, computed once per event. All fields are derived from the stanza
// and the Context; nothing here is configuration.
type Facts struct {
	Kind string // "message", "presence", "iq" (local name of the stanza)
	Type string // the type attribute, "normal" if absent on a message

	// Message is the message the facts describe: the stanza itself, or the
	// forwarded message inside a received carbon.
	Message *stanza.Element
	From    jid.JID // of Message
	Chat    string  // bare JID of the conversation (the room for occupant JIDs)

	Body        string
	HasBody     bool
	Encrypted   bool // OMEMO, OX, legacy PGP or SCE payload
	Call        CallAction
	ChatState   bool // carries a XEP-0085 chat state
	Receipt     bool // a XEP-0184 receipt or XEP-0333 marker
	Correction  bool
	SentCarbon  bool // a carbon of the user's own outgoing message
	Headline    bool
	Error       bool
	Reflection  bool // the user's own message reflected by a MUC
	Groupchat   bool
	Invite      bool   // a MUC invitation (direct or mediated)
	ArchiveID   string // from the context or the stanza-id the account's archive assigned
	Mention     bool   // mentions the user (nick as a word, or a XEP-0372 reference)
	Reply       bool   // a XEP-0461 reply to one of the user's messages
	ContentOnly bool   // only chat states / receipts / markers: nothing to show
}

// Important reports whether the stanza is worth waking a device for
// (push2.md "urn:xmpp:push2:match:important"; the rules are those of the
// CSI traffic optimisations most servers carry): a message with a body, an
// encrypted payload, a call, an invitation; but not chat states alone,
// receipts, headlines, carbons of the user's own messages, corrections or
// the user's own reflections.
func (f *Facts) Important() bool {
	if f.Kind != "message" || f.Error || f.Headline || f.SentCarbon || f.Correction || f.Reflection {
		return false
	}
	switch f.Call {
	case CallPropose, CallRetract:
		return true
	}
	return f.HasBody || f.Encrypted || f.Invite
}

// Priority returns the priority the facts suggest: high for calls, normal
// for important stanzas, low for the rest.
func (f *Facts) Priority() Priority {
	switch {
	case f.Call == CallPropose || f.Call == CallRetract:
		return PriorityHigh
	case f.Important():
		return PriorityNormal
	default:
		return PriorityLow
	}
}

// Inspect computes the facts of a stanza for an account.
func Inspect(st *stanza.Element, c *Context) *Facts {
	f := new(Facts)
	inspect(f, st, c)
	return f
}

// inspect is Inspect into f, which Evaluate allocates with the rest of an
// evaluation's state.
func inspect(f *Facts, st *stanza.Element, c *Context) {
	*f = Facts{Kind: st.Name.Local, Type: st.AttrValue("type"), Message: st}
	if f.Kind == "message" && f.Type == "" {
		f.Type = "normal"
	}
	f.Error = f.Type == "error"
	if f.Kind != "message" {
		p, _ := lookupJID(st.AttrValue("from"))
		f.From, f.Chat = p.j, p.bare
		return
	}

	// Carbons (XEP-0280): a received carbon stands for the forwarded
	// message; a sent carbon is the user talking, never pushed as important.
	msg := st
	if sent := st.Child(stanza.NSCarbons, "sent"); sent != nil {
		f.SentCarbon = true
		if m := forwarded(sent); m != nil {
			msg = m
		}
	} else if recv := st.Child(stanza.NSCarbons, "received"); recv != nil {
		if m := forwarded(recv); m != nil {
			msg = m
			f.Type = msg.AttrValue("type")
			if f.Type == "" {
				f.Type = "normal"
			}
			f.Error = f.Type == "error"
		}
	}
	f.Message = msg
	p, _ := lookupJID(msg.AttrValue("from"))
	f.From, f.Chat = p.j, p.bare
	f.Headline = f.Type == "headline"
	f.Groupchat = f.Type == "groupchat"

	for _, ch := range msg.Children {
		switch ch.Name.Space {
		case stanza.NSClient, "":
			if ch.Name.Local == "body" {
				f.Body = ch.Text
				f.HasBody = strings.TrimSpace(ch.Text) != ""
			}
		case stanza.NSChatStates:
			f.ChatState = true
		case stanza.NSReceipts:
			if ch.Name.Local == "received" {
				f.Receipt = true
			}
		case stanza.NSMarkers:
			if ch.Name.Local != "markable" {
				f.Receipt = true
			}
		case stanza.NSCorrection:
			f.Correction = ch.Name.Local == "replace"
		case stanza.NSOMEMOLegacy, stanza.NSOMEMO2, stanza.NSOX, stanza.NSSCE:
			if ch.Name.Local == "encrypted" || ch.Name.Local == "openpgp" || ch.Name.Local == "envelope" {
				f.Encrypted = true
			}
		case stanza.NSLegacyPGP:
			if ch.Name.Local == "x" {
				f.Encrypted = true
			}
		case stanza.NSJMI:
			switch ch.Name.Local {
			case "propose":
				f.Call = CallPropose
			case "retract":
				f.Call = CallRetract
			default:
				if f.Call == CallNone {
					f.Call = CallOther
				}
			}
		case stanza.NSMUCInvite:
			if ch.Name.Local == "x" {
				f.Invite = true
			}
		case stanza.NSMUCUser:
			if ch.Child(stanza.NSMUCUser, "invite") != nil {
				f.Invite = true
			}
		case stanza.NSStanzaID:
			if ch.Name.Local == "stanza-id" && c != nil && f.ArchiveID == "" && sameBare(ch.AttrValue("by"), c.Account) {
				f.ArchiveID = ch.AttrValue("id")
			}
		}
	}
	if c != nil && c.ArchiveID != "" && (c.ArchiveBy == "" || sameBare(c.ArchiveBy, c.Account)) {
		f.ArchiveID = c.ArchiveID
	}
	f.ContentOnly = !f.HasBody && !f.Encrypted && f.Call == CallNone && !f.Invite && (f.ChatState || f.Receipt)

	nick := ""
	if c != nil {
		nick = c.Nick
	}
	if f.Groupchat && nick != "" && f.From.Resourcepart() == nick {
		f.Reflection = true
	}
	if c != nil {
		f.Mention = mentions(msg, f, c)
		f.Reply = repliesTo(msg, f, c)
	}
}

func forwarded(wrapper *stanza.Element) *stanza.Element {
	fw := wrapper.Child(stanza.NSForward, "forwarded")
	if fw == nil {
		return nil
	}
	for _, c := range fw.Children {
		if c.Name.Local == "message" {
			return c
		}
	}
	return nil
}

func sameBare(a, b string) bool {
	ja, err1 := bareJID(a)
	jb, err2 := bareJID(b)
	return err1 == nil && err2 == nil && ja == jb
}

// selfNick is the name the user goes by in this conversation: the room nick
// given by the server, else the account's localpart.
func selfNick(c *Context) string {
	if c.Nick != "" {
		return c.Nick
	}
	if j, err := parseJID(c.Account); err == nil {
		return j.Localpart()
	}
	return ""
}

// selfJIDs are the addresses that name the user in this conversation: the
// account, and in a room the occupant JID room/nick.
func selfJIDs(f *Facts, c *Context) []jid.JID {
	var out []jid.JID
	if j, err := parseJID(c.Account); err == nil {
		out = append(out, j.Bare())
	}
	if f.Groupchat && c.Nick != "" {
		if occ, err := f.From.Bare().WithResource(c.Nick); err == nil {
			out = append(out, occ)
		}
	}
	return out
}

func isSelf(f *Facts, c *Context, s string, bareMatchesAccount bool) bool {
	s = strings.TrimPrefix(s, "xmpp:")
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i]
	}
	j, err := parseJID(s)
	if err != nil {
		return false
	}
	for i, self := range selfJIDs(f, c) {
		if i == 0 && bareMatchesAccount {
			if j.Bare().Equal(self) {
				return true
			}
			continue
		}
		if j.Equal(self) {
			return true
		}
	}
	return false
}

// mentions: the nick as a whole word in the body (case-insensitive), or a
// XEP-0372 mention reference to the user's account or occupant JID.
func mentions(msg *stanza.Element, f *Facts, c *Context) bool {
	for _, r := range msg.ChildrenNamed(stanza.NSReference, "reference") {
		if r.AttrValue("type") == "mention" && isSelf(f, c, r.AttrValue("uri"), true) {
			return true
		}
	}
	if !f.HasBody {
		return false
	}
	return containsWord(f.Body, selfNick(c))
}

// repliesTo: a XEP-0461 reply whose 'to' is the user (the account for a
// one-to-one chat, the occupant JID in a room).
func repliesTo(msg *stanza.Element, f *Facts, c *Context) bool {
	r := msg.Child(stanza.NSReply, "reply")
	if r == nil {
		return false
	}
	return isSelf(f, c, r.AttrValue("to"), !f.Groupchat)
}

// containsWord reports whether word occurs in text, case-insensitively, with
// no letter, digit or underscore right before or after it.
func containsWord(text, word string) bool {
	if word == "" {
		return false
	}
	lt, lw := strings.ToLower(text), strings.ToLower(word)
	for from := 0; from <= len(lt); {
		i := strings.Index(lt[from:], lw)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(lw)
		before, _ := utf8.DecodeLastRuneInString(lt[:start])
		after, _ := utf8.DecodeRuneInString(lt[end:])
		if (start == 0 || !isWordRune(before)) && (end == len(lt) || !isWordRune(after)) {
			return true
		}
		_, size := utf8.DecodeRuneInString(lt[start:])
		from = start + size
	}
	return false
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_'
}

// Facts returns the stanza's facts, computed once per event and shared by
// every profile that asks.
func (in *MatchInput) Facts() *Facts {
	if in.facts == nil {
		in.facts = Inspect(in.Stanza, in.Context)
	}
	return in.facts
}
