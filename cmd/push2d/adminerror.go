package main

import (
	"errors"
	"net/http"

	"github.com/push2/push2/engine/stanza"
)

// adminError answers a failed admin request: 400 with the engine's text
// when the request was wrong (the engine says so with a stanza error of
// type modify: a bad account, unknown ids), 500 otherwise — a store or
// profile failure is push2d's problem, not the caller's, and a client must
// not be told to change a request that was right. The cause of a 500 goes
// to the log, not to the response.
func (d *daemon) adminError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var se *stanza.Error
	if errors.As(err, &se) && se.Type == stanza.Modify {
		http.Error(w, what+": "+err.Error(), http.StatusBadRequest)
		return
	}
	d.log.Error("admin: request failed", "path", r.URL.Path, "err", err)
	http.Error(w, what+": internal error (see push2d's log)", http.StatusInternalServerError)
}
