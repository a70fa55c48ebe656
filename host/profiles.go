package host

import (
	"context"
	"errors"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/host/internal/abi"

	"github.com/tetratelabs/wazero/api"

	"github.com/push2/push2/engine"
)

// matchProfile is a WASM match profile: engine.MatchProfile on top of the
// module's push2_match and push2_validate exports (sdk/ABI.md §3, §4).
type matchProfile struct {
	m     *Module
	uri   string
	index int32
}

var _ engine.MatchProfile = (*matchProfile)(nil)

func (p *matchProfile) ID() string { return p.uri }

// Module returns the module the profile runs in.
func (p *matchProfile) Module() *Module { return p.m }

// Provision runs push2_validate on the registration's <match/>, if the
// module exports it; without it every <match/> is accepted. The guest's
// verdict becomes bad-request with its reason; a host-side failure
// (including ctx ending: the client gave up on its <enable/>) becomes
// internal-server-error, so a broken module never lets a registration
// through unchecked. WASM profiles keep no state between calls, so the
// provisioned value is always nil.
func (p *matchProfile) Provision(ctx context.Context, match *stanza.Element) (any, error) {
	return nil, validate(ctx, p.m, kindValidate, p.uri, p.index, match)
}

func validate(ctx context.Context, m *Module, kind callKind, uri string, index int32, el *stanza.Element) error {
	if q := m.Quarantined(); q != nil {
		return unavailable(uri)
	}
	if !m.exports[kind.String()] {
		return nil
	}
	c := newCall(m, kind, uri)
	defer c.release()
	if kind == kindValidate {
		c.match = el
	} else {
		c.send = el
	}
	err := m.invoke(ctx, c, index, func(res uint64) error {
		if st := api.DecodeI32(res); st < 0 {
			return &GuestError{Status: st, Reason: c.reason}
		}
		return nil
	})
	var ge *GuestError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ge):
		text := ge.Reason
		if text == "" {
			text = "rejected by " + uri
		}
		return stanza.BadRequest("%s", text)
	default:
		return unavailable(uri)
	}
}

func unavailable(uri string) error {
	return stanza.InternalServerError("profile %s is temporarily unavailable", uri)
}

// Match runs push2_match and decodes its result word (sdk/ABI.md §4 "Match
// result").
func (p *matchProfile) Match(ctx context.Context, in *engine.MatchInput) (engine.Decision, error) {
	c := newCall(p.m, kindMatch, p.uri)
	defer c.release()
	c.stanza, c.match, c.ectx, c.mi = in.Stanza, in.Match, in.Context, in
	var d engine.Decision
	err := p.m.invoke(ctx, c, p.index, func(res uint64) error {
		w := api.DecodeI32(res)
		if w < 0 {
			return &GuestError{Status: w, Reason: c.reason}
		}
		if w&^abi.MatchKnownBits != 0 {
			return malformed("push2_match returned %#x, which sets undefined bits", w)
		}
		d.Push = w&abi.MatchPush != 0
		d.Priority = engine.Priority((w & abi.MatchPriorityMask) >> abi.MatchPriorityShift)
		d.VoIP = w&abi.MatchVoIP != 0
		d.Reason = c.reason
		return nil
	})
	if err != nil {
		return engine.Decision{}, err
	}
	return d, nil
}

// sendProfile is a WASM send profile: engine.SendProfile on top of
// push2_send and push2_prepare.
type sendProfile struct {
	m     *Module
	uri   string
	index int32
}

var _ engine.SendProfile = (*sendProfile)(nil)

func (p *sendProfile) ID() string { return p.uri }

// Module returns the module the profile runs in.
func (p *sendProfile) Module() *Module { return p.m }

// Provision runs push2_prepare on <send/>, if exported, as matchProfile's
// Provision runs push2_validate.
func (p *sendProfile) Provision(ctx context.Context, send *stanza.Element) (any, error) {
	return nil, validate(ctx, p.m, kindPrepare, p.uri, p.index, send)
}

// Send runs push2_send and parses what it wrote with push2.output as the
// children of <notification/> (sdk/ABI.md §4 "Send result").
func (p *sendProfile) Send(ctx context.Context, in *engine.SendInput) ([]*stanza.Element, error) {
	c := newCall(p.m, kindSend, p.uri)
	defer c.release()
	c.stanza, c.send, c.ectx, c.decision, c.budget = in.Stanza, in.Send, in.Context, in.Decision, in.Budget
	c.si = in
	var out []*stanza.Element
	err := p.m.invoke(ctx, c, p.index, func(res uint64) error {
		if st := api.DecodeI32(res); st < 0 {
			return &GuestError{Status: st, Reason: c.reason}
		}
		var err error
		out, err = parseNotificationChildren(c.out, in.Budget)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseNotificationChildren parses a send result: zero or more elements,
// each in a namespace of its own (not urn:xmpp:push2:0, whose <client/>,
// <priority/> and <voip/> the engine writes), whose serialized size inside
// <notification/> is within budget.
func parseNotificationChildren(b []byte, budget int) ([]*stanza.Element, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > budget+4096 {
		// Far beyond anything that could fit: do not even parse it.
		return nil, malformed("%d bytes of output, far over the budget of %d bytes", len(b), budget)
	}
	wrapped := make([]byte, 0, len(b)+64)
	wrapped = append(wrapped, `<notification xmlns="`+stanza.NSPush2+`">`...)
	wrapped = append(wrapped, b...)
	wrapped = append(wrapped, "</notification>"...)
	root, err := stanza.Parse(wrapped)
	if err != nil {
		return nil, malformed("not well-formed XML children: %v", err)
	}
	if !root.Is(stanza.NSPush2, "notification") {
		return nil, malformed("the output escapes <notification/>")
	}
	if len(root.Attr) > 0 || trimmed(root.Text) != "" {
		return nil, malformed("text or attributes outside any element")
	}
	size := 0
	for _, ch := range root.Children {
		if ch.Name.Space == stanza.NSPush2 {
			return nil, malformed("<%s/> is in %s; send profiles write elements in their own namespace", ch.Name.Local, stanza.NSPush2)
		}
		size += len(ch.MarshalIn(stanza.NSPush2))
	}
	if size > budget {
		return nil, malformed("the children take %d bytes, over the budget of %d bytes", size, budget)
	}
	return root.Children, nil
}

func trimmed(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r') {
		s = s[1:]
	}
	return s
}
