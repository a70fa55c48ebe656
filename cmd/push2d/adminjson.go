package main

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/push2/push2/engine"
)

// The admin interface's JSON, one type per answer. Every field name is
// snake_case, set here by a json tag: the engine's types are never encoded
// directly, so renaming a Go field cannot change what operators' scripts
// read. docs/push2d.md "Admin interface" documents every field; keep the
// two in step (TestAdminJSONSnakeCase checks the names).

// profileJSON is one element of GET /profiles.
type profileJSON struct {
	URI    string `json:"uri"`
	Kind   string `json:"kind"`   // "match" or "send"
	Source string `json:"source"` // "builtin", or the module, e.g. "wasm sha256:…"
}

func profilesJSON(ps []engine.ProfileInfo) []profileJSON {
	out := make([]profileJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, profileJSON{URI: p.URI, Kind: p.Kind, Source: p.Source})
	}
	return out
}

// registrationJSON is one element of GET /registrations.
type registrationJSON struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	// ClientSHA256 stands for the <client/> value, which routes
	// notifications to one device and is therefore not shown: the first 8
	// bytes of its SHA-256, in hex (clientDigest).
	ClientSHA256 string    `json:"client_sha256"`
	Created      time.Time `json:"created"`
	// StoredBytes is the size of the registration as stored: what every
	// reload of the account's registrations parses again.
	StoredBytes int `json:"stored_bytes"`
	// Suspended: the XMPP server disabled the account; the registration
	// is kept but gets no pushes until the account is enabled again.
	Suspended bool        `json:"suspended"`
	Matches   []matchJSON `json:"matches"`
}

// matchJSON is one <match/> of a registration.
type matchJSON struct {
	Profile string   `json:"profile"`
	Send    string   `json:"send"`
	Grace   string   `json:"grace,omitempty"`
	Filters []string `json:"filters,omitempty"`
}

// clientDigest is what client_sha256 shows of a client token: 16 hex
// digits, enough to tell a registration's device apart from another's and
// to check a token one holds (printf %s TOKEN | sha256sum | cut -c1-16),
// not enough to use it.
func clientDigest(client string) string {
	h := sha256.Sum256([]byte(client))
	return hex.EncodeToString(h[:8])
}

func registrationsJSON(regs []*engine.Registration) []registrationJSON {
	out := make([]registrationJSON, 0, len(regs))
	for _, r := range regs {
		x := registrationJSON{ID: r.ID, Service: r.Service, ClientSHA256: clientDigest(r.Client), Created: r.Created, StoredBytes: r.Enable.Size(), Suspended: r.Suspended, Matches: []matchJSON{}}
		for _, m := range r.Matches {
			mm := matchJSON{Profile: m.Profile, Send: m.SendNS}
			if m.Grace > 0 {
				mm.Grace = m.Grace.String()
			}
			for _, f := range m.Filters {
				mm.Filters = append(mm.Filters, f.JID)
			}
			x.Matches = append(x.Matches, mm)
		}
		out = append(out, x)
	}
	return out
}

// disabledJSON is one element of GET /disabled.
type disabledJSON struct {
	Account       string    `json:"account"`
	ID            string    `json:"id"`
	Service       string    `json:"service"`
	At            time.Time `json:"at"`
	Reason        string    `json:"reason"`
	Errors        int       `json:"errors"`
	FirstError    time.Time `json:"first_error"`
	LastCondition string    `json:"last_condition"`
}

func disabledsJSON(recs []engine.DisabledRecord) []disabledJSON {
	out := make([]disabledJSON, 0, len(recs))
	for _, r := range recs {
		out = append(out, disabledJSON{Account: r.Account, ID: r.ID, Service: r.Service, At: r.At, Reason: r.Reason,
			Errors: r.Errors, FirstError: r.FirstError, LastCondition: r.LastCondition})
	}
	return out
}

// outboxJSON is GET /outbox.
type outboxJSON struct {
	Entries int `json:"entries"` // notifications not yet known delivered
}

// pingJSON is POST /ping's answer.
type pingJSON struct {
	Pushed []string `json:"pushed"` // ids of the registrations pushed to
}
