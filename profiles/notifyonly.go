package profiles

import (
	"context"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// notifyOnly is urn:xmpp:push2:send:notify-only:0: an empty notification
// (only the <client/> and <priority/> the engine adds), enough to wake a
// client that then connects and fetches its messages over XMPP.
type notifyOnly struct{}

var _ engine.SendProfile = notifyOnly{}

// NotifyOnly returns the notify-only send profile.
func NotifyOnly() engine.SendProfile { return notifyOnly{} }

func (notifyOnly) ID() string { return SendNotifyOnly }

// Provision accepts <send/> with no required content.
func (notifyOnly) Provision(context.Context, *stanza.Element) (any, error) { return nil, nil }

func (notifyOnly) Send(context.Context, *engine.SendInput) ([]*stanza.Element, error) {
	return nil, nil
}

// Builtin returns every built-in Push 2.0 profile, ready for
// engine.Registry.Register, with default options (see BuiltinWith to
// configure them and to add the XEP-0357 pair).
func Builtin() engine.ProfileSet { return BuiltinWith(Options{}) }
