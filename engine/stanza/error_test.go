package stanza

import (
	"fmt"
	"testing"
)

// TestErrorConstructors: each constructor gives the type RFC 6120 §8.3.3
// pairs with its condition, and the rendered <error/> carries both and the
// text in the stanza error namespace.
func TestErrorConstructors(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{BadRequest("<%s/> is wrong", "grace"), `<error xmlns="jabber:client" type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">&lt;grace/&gt; is wrong</text></error>`},
		{FeatureNotImplemented("no %q", "x"), `<error xmlns="jabber:client" type="cancel"><feature-not-implemented xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">no "x"</text></error>`},
		{NotAllowed("not here"), `<error xmlns="jabber:client" type="cancel"><not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">not here</text></error>`},
		{InternalServerError("later"), `<error xmlns="jabber:client" type="wait"><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">later</text></error>`},
		{ServiceUnavailable(), `<error xmlns="jabber:client" type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>`},
	} {
		if got := tc.err.Element().String(); got != tc.want {
			t.Errorf("%v:\n got %s\nwant %s", tc.err, got, tc.want)
		}
	}
	if got := BadRequest("100%% sure").Error(); got != "bad-request: 100% sure" {
		t.Errorf("Error() = %q", got)
	}
	if got := ServiceUnavailable().Error(); got != "service-unavailable" {
		t.Errorf("Error() without text = %q", got)
	}
	wrapped := fmt.Errorf("enable: %w", NotAllowed("x"))
	if se, ok := AsError(wrapped); !ok || se.Condition != CondNotAllowed || se.Type != Cancel {
		t.Errorf("AsError(%v) = %v, %v", wrapped, se, ok)
	}
	if _, ok := AsError(fmt.Errorf("plain")); ok {
		t.Error("AsError found a stanza error in a plain error")
	}
}
