package push2

import "strconv"

// MatchProfile is a match profile implemented in Go (sdk/ABI.md §3).
type MatchProfile struct {
	URI string // your own URI, never under urn:xmpp:push2:
	// Match decides on the current stanza (read it with Stanza, Fact…).
	Match func() Decision
	// Validate, if set, checks the registration's <match/> (MatchElement)
	// at enable time; an error refuses the registration with its text.
	Validate func() error
}

// SendProfile is a send profile implemented in Go.
type SendProfile struct {
	URI string // the namespace of its <send/> element
	// Send writes the children of <notification/> with Output.
	Send func() error
	// Prepare, if set, checks <send/> (SendElement) at enable time.
	Prepare func() error
}

type profile struct {
	uri   string
	kind  string
	match MatchProfile
	send  SendProfile
}

var profiles []profile

// RegisterMatch declares a match profile. Call it from init.
func RegisterMatch(p MatchProfile) {
	profiles = append(profiles, profile{uri: p.URI, kind: "match", match: p})
}

// RegisterSend declares a send profile. Call it from init.
func RegisterSend(p SendProfile) {
	profiles = append(profiles, profile{uri: p.URI, kind: "send", send: p})
}

func get(i int32, kind string) *profile {
	if i < 0 || int(i) >= len(profiles) || profiles[i].kind != kind {
		return nil
	}
	return &profiles[i]
}

// fail reports err as the reason and returns the status of sdk/ABI.md §4 for
// a guest-side error.
func fail(err error) int32 {
	SetReason(err.Error())
	if se, ok := err.(StatusError); ok && se < 0 {
		return int32(se)
	}
	return StatusFailed
}

//go:wasmexport push2_describe
func push2Describe() int32 {
	abiV1() // the version gate import (sdk/ABI.md §2)
	b := []byte(`{"profiles":[`)
	for i, p := range profiles {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"uri":`...)
		b = strconv.AppendQuote(b, p.uri)
		b = append(b, `,"kind":"`...)
		b = append(b, p.kind...)
		b = append(b, `"}`...)
	}
	b = append(b, "]}"...)
	if err := Output(b); err != nil {
		return int32(err.(StatusError))
	}
	return StatusOK
}

//go:wasmexport push2_match
func push2Match(i int32) int32 {
	begin()
	p := get(i, "match")
	if p == nil || p.match.Match == nil {
		return StatusInvalid
	}
	d := p.match.Match()
	if d.Reason != "" {
		SetReason(d.Reason)
	}
	return d.word()
}

//go:wasmexport push2_validate
func push2Validate(i int32) int32 {
	begin()
	p := get(i, "match")
	if p == nil {
		return StatusInvalid
	}
	if p.match.Validate != nil {
		if err := p.match.Validate(); err != nil {
			return fail(err)
		}
	}
	return StatusOK
}

//go:wasmexport push2_send
func push2Send(i int32) int32 {
	begin()
	p := get(i, "send")
	if p == nil || p.send.Send == nil {
		return StatusInvalid
	}
	if err := p.send.Send(); err != nil {
		return fail(err)
	}
	return StatusOK
}

//go:wasmexport push2_prepare
func push2Prepare(i int32) int32 {
	begin()
	p := get(i, "send")
	if p == nil {
		return StatusInvalid
	}
	if p.send.Prepare != nil {
		if err := p.send.Prepare(); err != nil {
			return fail(err)
		}
	}
	return StatusOK
}
