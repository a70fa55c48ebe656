package engine

import "github.com/push2/push2/engine/stanza"

// AsStanzaError converts any error to a stanza error: a *stanza.Error in
// the chain is returned as is, anything else becomes internal-server-error
// with a generic text (the original is for logs only).
func AsStanzaError(err error) *stanza.Error {
	if se, ok := stanza.AsError(err); ok {
		return se
	}
	return stanza.InternalServerError("the push service is temporarily unavailable")
}
