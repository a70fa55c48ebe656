package engine

import (
	"errors"
	"fmt"

	"github.com/push2/push2/engine/stanza"
)

// Stanza error conditions (RFC 6120 §8.3.3) the engine answers with.
const (
	CondBadRequest            = "bad-request"
	CondFeatureNotImplemented = "feature-not-implemented"
	CondItemNotFound          = "item-not-found"
	CondNotAllowed            = "not-allowed"
	CondInternalServerError   = "internal-server-error"
	CondResourceConstraint    = "resource-constraint"
)

// StanzaError is an error that maps to an XMPP stanza error: a type, a
// defined condition and a human-readable text. The text must never contain
// secret material (keys, auth secrets, tokens).
type StanzaError struct {
	Type      string // "modify", "cancel", "wait", "auth"
	Condition string
	Text      string
}

func (e *StanzaError) Error() string {
	if e.Text == "" {
		return e.Condition
	}
	return e.Condition + ": " + e.Text
}

// Element renders the error as a jabber:client <error/> element.
func (e *StanzaError) Element() *stanza.Element {
	el := stanza.NewElement(stanza.NSClient, "error", "type", e.Type)
	el.Append(stanza.NewElement(stanza.NSStanzaError, e.Condition))
	if e.Text != "" {
		el.Append(stanza.NewElement(stanza.NSStanzaError, "text").WithText(e.Text))
	}
	return el
}

func badRequest(format string, args ...any) *StanzaError {
	return &StanzaError{Type: "modify", Condition: CondBadRequest, Text: fmt.Sprintf(format, args...)}
}

func notImplemented(format string, args ...any) *StanzaError {
	return &StanzaError{Type: "cancel", Condition: CondFeatureNotImplemented, Text: fmt.Sprintf(format, args...)}
}

// AsStanzaError converts any error to a StanzaError: a *StanzaError in the
// chain is returned as is, anything else becomes internal-server-error with
// a generic text (the original is for logs only).
func AsStanzaError(err error) *StanzaError {
	var se *StanzaError
	if errors.As(err, &se) {
		return se
	}
	return &StanzaError{Type: "wait", Condition: CondInternalServerError, Text: "the push service is temporarily unavailable"}
}
