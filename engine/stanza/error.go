package stanza

import (
	"errors"
	"fmt"

	xstanza "mellium.im/xmpp/stanza"
)

// ErrorType and Condition are mellium's (RFC 6120 §8.3.2, §8.3.3), so the
// values push2 answers with are the ones the XMPP library reads and writes.
// This file is the only place that spells a condition or a type: everything
// else uses these names.
type (
	ErrorType = xstanza.ErrorType
	Condition = xstanza.Condition
)

// Error types (RFC 6120 §8.3.2).
const (
	Auth     = xstanza.Auth     // retry after providing credentials
	Cancel   = xstanza.Cancel   // do not retry: the error cannot be remedied
	Continue = xstanza.Continue // proceed: the condition was only a warning
	Modify   = xstanza.Modify   // retry after changing the data sent
	Wait     = xstanza.Wait     // retry after waiting: the error is temporary
)

// Defined conditions (RFC 6120 §8.3.3).
const (
	CondBadRequest            = xstanza.BadRequest
	CondConflict              = xstanza.Conflict
	CondFeatureNotImplemented = xstanza.FeatureNotImplemented
	CondForbidden             = xstanza.Forbidden
	CondGone                  = xstanza.Gone
	CondInternalServerError   = xstanza.InternalServerError
	CondItemNotFound          = xstanza.ItemNotFound
	CondJIDMalformed          = xstanza.JIDMalformed
	CondNotAcceptable         = xstanza.NotAcceptable
	CondNotAllowed            = xstanza.NotAllowed
	CondNotAuthorized         = xstanza.NotAuthorized
	CondPolicyViolation       = xstanza.PolicyViolation
	CondRecipientUnavailable  = xstanza.RecipientUnavailable
	CondRedirect              = xstanza.Redirect
	CondRegistrationRequired  = xstanza.RegistrationRequired
	CondRemoteServerNotFound  = xstanza.RemoteServerNotFound
	CondRemoteServerTimeout   = xstanza.RemoteServerTimeout
	CondResourceConstraint    = xstanza.ResourceConstraint
	CondServiceUnavailable    = xstanza.ServiceUnavailable
	CondSubscriptionRequired  = xstanza.SubscriptionRequired
	CondUndefinedCondition    = xstanza.UndefinedCondition
	CondUnexpectedRequest     = xstanza.UnexpectedRequest
)

// Error is an error that maps to an XMPP stanza error: a type, a defined
// condition and a human-readable text. The text must never contain secret
// material (keys, auth secrets, tokens): it goes to the client as it is.
type Error struct {
	Type      ErrorType
	Condition Condition
	Text      string
}

// NewError returns an error of type t and condition c with a text made as
// fmt.Sprintf does.
func NewError(t ErrorType, c Condition, format string, args ...any) *Error {
	return &Error{Type: t, Condition: c, Text: fmt.Sprintf(format, args...)}
}

// BadRequest is a modify bad-request: the request itself is wrong, and
// the text says what.
func BadRequest(format string, args ...any) *Error {
	return NewError(Modify, CondBadRequest, format, args...)
}

// FeatureNotImplemented is a cancel feature-not-implemented: a profile or
// protocol version this server does not have.
func FeatureNotImplemented(format string, args ...any) *Error {
	return NewError(Cancel, CondFeatureNotImplemented, format, args...)
}

// NotAllowed is a cancel not-allowed: the sender may not do this here.
func NotAllowed(format string, args ...any) *Error {
	return NewError(Cancel, CondNotAllowed, format, args...)
}

// InternalServerError is a wait internal-server-error: the request may
// well be valid and can be retried; the cause is for the logs only.
func InternalServerError(format string, args ...any) *Error {
	return NewError(Wait, CondInternalServerError, format, args...)
}

// ServiceUnavailable is a cancel service-unavailable, the answer to a
// request this entity does not serve (RFC 6120 §8.4), with no text.
func ServiceUnavailable() *Error {
	return &Error{Type: Cancel, Condition: CondServiceUnavailable}
}

func (e *Error) Error() string {
	if e.Text == "" {
		return string(e.Condition)
	}
	return string(e.Condition) + ": " + e.Text
}

// Element renders the error as a jabber:client <error/> element.
func (e *Error) Element() *Element {
	el := NewElement(NSClient, "error", "type", string(e.Type))
	el.Append(NewElement(NSStanzaError, string(e.Condition)))
	if e.Text != "" {
		el.Append(NewElement(NSStanzaError, "text").WithText(e.Text))
	}
	return el
}

// AsError returns the *Error in err's chain, if there is one.
func AsError(err error) (*Error, bool) {
	var se *Error
	ok := errors.As(err, &se)
	return se, ok
}
