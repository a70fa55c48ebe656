package bridgeproto

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// NS is the protocol's namespace, for every version (versions.go): a request in
// another urn:push2:bridge:N gets feature-not-implemented naming this one.
const NS = "urn:push2:bridge:1"

// nsFamily is what every version's namespace starts with.
const nsFamily = "urn:push2:bridge:"

// Element names of the protocol's messages and requests.
const (
	KindEnable        = "enable"         // IQ set, bridge → push2d
	KindDisable       = "disable"        // IQ set, bridge → push2d
	KindRegistered    = "registered"     // in an enable's result
	KindFeatures      = "features"       // message push2d → bridge; IQ get bridge → push2d
	KindEvent         = "event"          // message, bridge → push2d
	KindAck           = "ack"            // message, push2d → bridge
	KindPush          = "push"           // message, push2d → bridge
	KindDeliveryError = "delivery-error" // message, bridge → push2d
	KindDelivered     = "delivered"      // message, bridge → push2d
	KindActivity      = "activity"       // message, bridge → push2d
)

// expect checks that el is <name xmlns='urn:push2:bridge:1'/>.
func expect(el *stanza.Element, name string) error {
	if el == nil {
		return stanza.BadRequest("missing <%s xmlns='%s'/>", name, NS)
	}
	if !el.Is(NS, name) {
		return stanza.BadRequest("expected <%s xmlns='%s'/>, got <%s xmlns='%s'/>", name, NS, el.Name.Local, el.Name.Space)
	}
	return nil
}

// need returns attribute attr of el, or an error naming it when it is
// empty.
func need(el *stanza.Element, attr string) (string, error) {
	v := el.AttrValue(attr)
	if v == "" {
		return "", stanza.BadRequest("<%s/> needs the %s attribute", el.Name.Local, attr)
	}
	return v, nil
}

// Enable is an <enable/> request: the client's <enable/> as it sent it
// (Push 2.0's urn:xmpp:push2:0, or another push protocol's such as
// XEP-0357's urn:xmpp:push:0, which the engine hands to that protocol's
// EnableParser) with the account and the session's registration id (its
// SASL2 client id, else its resource).
type Enable struct {
	Account, Registration string
	Request               *stanza.Element
}

// ParseEnable reads <enable xmlns='urn:push2:bridge:1'/>. The account's
// domain is not checked here (Service does).
func ParseEnable(el *stanza.Element) (*Enable, error) {
	if err := expect(el, KindEnable); err != nil {
		return nil, err
	}
	inner := el.Child(stanza.NSPush2, "enable")
	if inner == nil {
		inner = foreignChild(el, "enable")
	}
	if inner == nil {
		return nil, stanza.BadRequest("missing <enable xmlns='%s'/>", stanza.NSPush2)
	}
	return &Enable{Account: el.AttrValue("account"), Registration: el.AttrValue("registration"), Request: inner}, nil
}

// foreignChild returns el's first child called local in a namespace other
// than Push 2.0's and the protocol's own: another push protocol's
// <enable/> or <disable/>.
func foreignChild(el *stanza.Element, local string) *stanza.Element {
	for _, c := range el.Children {
		if c.Name.Local == local && c.Name.Space != stanza.NSPush2 && c.Name.Space != NS {
			return c
		}
	}
	return nil
}

// Element renders the request.
func (e *Enable) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindEnable, "account", e.Account, "registration", e.Registration)
	if e.Request != nil {
		el.Append(e.Request)
	}
	return el
}

// Disable is a <disable/> request. Request is the client's <disable/>:
// another push protocol's (XEP-0357's urn:xmpp:push:0 names the
// registrations by app server and node) goes to that protocol's
// EnableParser; Push 2.0's (urn:xmpp:push2:0) disables the session's
// registration and may be left out.
type Disable struct {
	Account, Registration string
	Request               *stanza.Element
}

// ParseDisable reads <disable xmlns='urn:push2:bridge:1'/>.
func ParseDisable(el *stanza.Element) (*Disable, error) {
	if err := expect(el, KindDisable); err != nil {
		return nil, err
	}
	inner := foreignChild(el, "disable")
	if inner == nil {
		inner = el.Child(stanza.NSPush2, "disable")
	}
	return &Disable{Account: el.AttrValue("account"), Registration: el.AttrValue("registration"), Request: inner}, nil
}

// Foreign reports whether the request is another push protocol's
// <disable/> (not Push 2.0's).
func (d *Disable) Foreign() bool {
	return d.Request != nil && !d.Request.Is(stanza.NSPush2, "disable")
}

// Element renders the request.
func (d *Disable) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindDisable, "account", d.Account, "registration", d.Registration)
	if d.Request != nil {
		el.Append(d.Request)
	}
	return el
}

// Registered is the payload of an enable's result: the registration's id,
// which the bridge remembers on the session (for XEP-0357 it is not the
// session's id).
type Registered struct{ ID string }

// Element renders the payload.
func (r Registered) Element() *stanza.Element {
	return stanza.NewElement(NS, KindRegistered, "id", r.ID)
}

// ParseRegistered reads <registered/>.
func ParseRegistered(el *stanza.Element) (Registered, error) {
	if err := expect(el, KindRegistered); err != nil {
		return Registered{}, err
	}
	id, err := need(el, "id")
	return Registered{ID: id}, err
}

// Features is push2d's disco feature list, which the bridge adds to every
// account's disco#info, and the parse limits it reads the bridge's stanzas
// with (nil: not announced; push2d always announces them).
type Features struct {
	Vars   []string
	Limits *Limits
	// DedupeWindow is how long push2d remembers what it pushed, in
	// seconds (0: not said): the bridge reports stored messages again
	// after the server's restart only within it.
	DedupeWindow int
	// Versions are the protocol versions push2d speaks (nil: not said,
	// an older push2d: version 1 only).
	Versions []int
}

// Element renders the list.
func (f Features) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindFeatures)
	if f.DedupeWindow > 0 {
		el.SetAttr("dedupe-window", strconv.Itoa(f.DedupeWindow))
	}
	if len(f.Versions) > 0 {
		v := make([]string, len(f.Versions))
		for i, n := range f.Versions {
			v[i] = strconv.Itoa(n)
		}
		el.SetAttr("versions", strings.Join(v, " "))
	}
	for _, v := range f.Vars {
		el.Append(stanza.NewElement(NS, "feature", "var", v))
	}
	if f.Limits != nil {
		el.Append(f.Limits.Element())
	}
	return el
}

// ParseFeatures reads <features/>; <feature/>s without a var are skipped.
func ParseFeatures(el *stanza.Element) (Features, error) {
	if err := expect(el, KindFeatures); err != nil {
		return Features{}, err
	}
	var f Features
	if attr := el.AttrValue("versions"); attr != "" {
		f.Versions = parseVersions(attr)
	}
	for _, c := range el.Children {
		if v := c.AttrValue("var"); c.Is(NS, "feature") && v != "" {
			f.Vars = append(f.Vars, v)
		}
		if c.Is(NS, KindLimits) {
			l, err := ParseLimits(c)
			if err != nil {
				return Features{}, err
			}
			f.Limits = &l
		}
	}
	return f, nil
}

// Event is a stanza event: a stanza for Account that no session took now,
// and why (Trigger). Only and Live come from the bridge's view of the
// account's sessions (Targets).
type Event struct {
	ID      string // what the ack names; empty: the bridge wants no ack
	Account string
	Trigger engine.Trigger
	// ArchiveID and ArchiveBy: the id the user's archive gave the stanza
	// and who gave it (optional).
	ArchiveID, ArchiveBy string
	Nick                 string // the user's nick in the stanza's room (optional)
	// Truncated is why the bridge sent only the stanza's outline (over
	// push2d's limits, docs/bridge-protocol.md "Stanzas over the limits");
	// empty when the stanza is whole.
	Truncated  string
	Live, Only []string
	Stanza     *stanza.Element // the <message xmlns='jabber:client'/>
}

// ParseEvent reads <event/>. It needs a known trigger and a jabber:client
// stanza (the first one counts); the account's domain is not checked here.
func ParseEvent(el *stanza.Element) (*Event, error) {
	if err := expect(el, KindEvent); err != nil {
		return nil, err
	}
	ev := &Event{
		ID: el.AttrValue("id"), Account: el.AttrValue("account"),
		ArchiveID: el.AttrValue("archive-id"), ArchiveBy: el.AttrValue("archive-by"), Nick: el.AttrValue("nick"),
		Truncated: el.AttrValue("truncated"),
	}
	for _, c := range el.Children {
		switch {
		case c.Is(NS, "only"):
			ev.Only = append(ev.Only, c.AttrValue("id"))
		case c.Is(NS, "live"):
			ev.Live = append(ev.Live, c.AttrValue("id"))
		case c.Name.Space == stanza.NSClient && ev.Stanza == nil:
			ev.Stanza = c
		}
	}
	trigger, ok := engine.ParseTrigger(el.AttrValue("trigger"))
	if ev.Stanza == nil || !ok {
		return ev, stanza.BadRequest("an event needs a known trigger and a stanza")
	}
	ev.Trigger = trigger
	return ev, nil
}

// Element renders the event.
func (ev *Event) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindEvent, "id", ev.ID, "account", ev.Account, "trigger", string(ev.Trigger))
	for _, a := range [][2]string{{"archive-id", ev.ArchiveID}, {"archive-by", ev.ArchiveBy}, {"nick", ev.Nick}, {"truncated", ev.Truncated}} {
		if a[1] != "" {
			el.SetAttr(a[0], a[1])
		}
	}
	for _, id := range ev.Live {
		el.Append(stanza.NewElement(NS, "live", "id", id))
	}
	for _, id := range ev.Only {
		el.Append(stanza.NewElement(NS, "only", "id", id))
	}
	if ev.Stanza != nil {
		el.Append(ev.Stanza)
	}
	return el
}

// Targets turns the bridge's view of the account's sessions into the
// registrations to evaluate: the Only ones if any, else all of the
// account's (all, called only then), minus the Live ones. nil means every
// registration of the account (nothing to restrict); an empty, non-nil
// slice means none.
func (ev *Event) Targets(all func() ([]string, error)) ([]string, error) {
	if len(ev.Only) == 0 && len(ev.Live) == 0 {
		return nil, nil
	}
	ids := ev.Only
	if len(ids) == 0 {
		var err error
		if ids, err = all(); err != nil {
			return nil, err
		}
	}
	out := []string{}
	for _, id := range ids {
		if !contains(ev.Live, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Ack acknowledges event ID. Error is empty when the event was done (its
// notifications are in the outbox), else the condition it was refused with
// (bad-request, not-allowed, …): the bridge drops it either way.
type Ack struct{ ID, Error string }

// Element renders the ack.
func (a Ack) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindAck, "id", a.ID)
	if a.Error != "" {
		el.SetAttr("error", a.Error)
	}
	return el
}

// ParseAck reads <ack/>.
func ParseAck(el *stanza.Element) (Ack, error) {
	if err := expect(el, KindAck); err != nil {
		return Ack{}, err
	}
	id, err := need(el, "id")
	return Ack{ID: id, Error: el.AttrValue("error")}, err
}

// Push asks the bridge to send Notification (a <message/> to a push
// service, or for XEP-0357 an <iq type='set'/> publish) for the account's
// registration.
type Push struct {
	Account, Registration string
	Notification          *stanza.Element
}

// Element renders the push.
func (p *Push) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindPush, "account", p.Account, "registration", p.Registration)
	if p.Notification != nil {
		el.Append(p.Notification)
	}
	return el
}

// ParsePush reads <push/>.
func ParsePush(el *stanza.Element) (*Push, error) {
	if err := expect(el, KindPush); err != nil {
		return nil, err
	}
	if len(el.Children) != 1 {
		return nil, stanza.BadRequest("<push/> needs exactly one stanza")
	}
	return &Push{Account: el.AttrValue("account"), Registration: el.AttrValue("registration"), Notification: el.Children[0]}, nil
}

// DeliveryError is a push service's error reply to notification ID, as the
// bridge passes it on. From is the reply's sender as the server stamped it:
// it counts only if it is the notification's service (Service).
type DeliveryError struct {
	ID, From        string
	Type, Condition string // Type is "cancel" when the reply had none
	Text            string
}

// ParseDeliveryError reads <delivery-error/>.
func ParseDeliveryError(el *stanza.Element) (*DeliveryError, error) {
	if err := expect(el, KindDeliveryError); err != nil {
		return nil, err
	}
	de := &DeliveryError{ID: el.AttrValue("id"), From: el.AttrValue("from"), Type: el.AttrValue("type"), Condition: el.AttrValue("condition"), Text: el.Text}
	if de.Type == "" {
		de.Type = string(stanza.Cancel)
	}
	if de.ID == "" || de.From == "" {
		return de, stanza.BadRequest("<delivery-error/> needs an id and a from attribute")
	}
	return de, nil
}

// Element renders the report.
func (de *DeliveryError) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindDeliveryError, "id", de.ID, "from", de.From, "type", de.Type, "condition", de.Condition)
	if de.Text != "" {
		el.WithText(de.Text)
	}
	return el
}

// Delivered is a positive delivery report for notification ID (an XEP-0357
// app server's IQ result), from the app server that answered.
type Delivered struct{ ID, From string }

// ParseDelivered reads <delivered/>.
func ParseDelivered(el *stanza.Element) (Delivered, error) {
	if err := expect(el, KindDelivered); err != nil {
		return Delivered{}, err
	}
	d := Delivered{ID: el.AttrValue("id"), From: el.AttrValue("from")}
	if d.ID == "" || d.From == "" {
		return d, stanza.BadRequest("<delivered/> needs an id and a from attribute")
	}
	return d, nil
}

// Element renders the report.
func (d Delivered) Element() *stanza.Element {
	return stanza.NewElement(NS, KindDelivered, "id", d.ID, "from", d.From)
}

// Activity says that another session of the account did something a user
// does (for <grace/>).
type Activity struct{ Account, Registration string }

// ParseActivity reads <activity/>.
func ParseActivity(el *stanza.Element) (Activity, error) {
	if err := expect(el, KindActivity); err != nil {
		return Activity{}, err
	}
	a := Activity{Account: el.AttrValue("account"), Registration: el.AttrValue("registration")}
	if a.Account == "" || a.Registration == "" {
		return a, stanza.BadRequest("<activity/> needs an account and a registration attribute")
	}
	return a, nil
}

// Element renders the report.
func (a Activity) Element() *stanza.Element {
	return stanza.NewElement(NS, KindActivity, "account", a.Account, "registration", a.Registration)
}

// Message wraps payload in the <message/> that carries it over the
// component stream, with a fresh id.
func Message(from, to string, payload *stanza.Element) *stanza.Element {
	m := stanza.NewElement(stanza.NSClient, "message", "from", from, "to", to, "id", NewID())
	m.Append(payload)
	return m
}

// NewID returns a random 128-bit id (32 hex digits) for the stanzas push2d
// sends: nothing correlates on them, but an id that cannot be guessed costs
// nothing and cannot be answered by anyone else.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// OtherVersion reports whether ns is another version of this protocol.
func OtherVersion(ns string) bool { return ns != NS && strings.HasPrefix(ns, nsFamily) }
