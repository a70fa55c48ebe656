// Command vip-go is the VIP-sender and keyword match profile
// urn:push2:plugin:vip:0, written with the Go SDK (sdk/go). plugins/vip-c is
// the same profile in C; both pass the cases in plugins/vip-go/cases.
//
// Configuration, children of the registration's <match/>:
//
//	<vip xmlns='urn:example:vip' jid='boss@example.com'/>    (any number)
//	<keyword xmlns='urn:example:vip'>urgent</keyword>         (any number)
//	<others xmlns='urn:example:vip' priority='low'/>          (optional)
//
// A call proposal always pushes (high, VoIP) and a retraction too (high, no
// VoIP). A message from a VIP chat, or whose body contains a keyword (ASCII
// case-insensitive), pushes with high priority. Other important stanzas push
// only if <others/> is present, with its priority; else nothing.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o vip-go.wasm ./plugins/vip-go
package main

import (
	"errors"

	push2 "github.com/push2/push2/sdk/go"
)

const (
	uri = "urn:push2:plugin:vip:0"
	ns  = "urn:example:vip"
)

func init() {
	push2.RegisterMatch(push2.MatchProfile{URI: uri, Match: match, Validate: validate})
}

func main() {}

func validate() error {
	n := 0
	for _, v := range push2.MatchElement.Children("{" + ns + "}vip") {
		if j, _ := v.Attr("jid"); j == "" {
			return errors.New("<vip/> needs a non-empty 'jid' attribute")
		}
		n++
	}
	for _, k := range push2.MatchElement.Children("{" + ns + "}keyword") {
		if k.Text() == "" {
			return errors.New("<keyword/> must not be empty")
		}
		n++
	}
	if n == 0 {
		return errors.New("give at least one <vip jid='…'/> or <keyword>…</keyword> in urn:example:vip")
	}
	if o, ok := push2.MatchElement.Find("{" + ns + "}others"); ok {
		if _, ok := parsePriority(o); !ok {
			return errors.New("<others priority='…'/> must be low, normal or high")
		}
	}
	return nil
}

func parsePriority(o push2.Element) (push2.Priority, bool) {
	p, ok := o.Attr("priority")
	if !ok {
		return push2.PriorityLow, true
	}
	switch p {
	case "low":
		return push2.PriorityLow, true
	case "normal":
		return push2.PriorityNormal, true
	case "high":
		return push2.PriorityHigh, true
	}
	return 0, false
}

// vipConfig is what match needs of <match/>: the VIP JIDs and keywords,
// lowered, and <others/>. It is kept between calls while <match/>'s bytes
// stay the same (push2.Cache): a call then reads one element instead of
// walking every child with host calls.
type vipConfig struct {
	vips, keywords []string
	others         bool
	priority       push2.Priority // of <others/>
}

var config push2.Cache[vipConfig]

func parseConfig() (vipConfig, error) {
	var c vipConfig
	for i := 0; ; i++ {
		e, ok := push2.MatchElement.Child(i)
		if !ok {
			break
		}
		switch {
		case e.Is("{" + ns + "}vip"):
			if j, _ := e.Attr("jid"); j != "" {
				c.vips = append(c.vips, lower(j))
			}
		case e.Is("{" + ns + "}keyword"):
			if k := e.Text(); k != "" {
				c.keywords = append(c.keywords, lower(k))
			}
		case !c.others && e.Is("{"+ns+"}others"):
			c.others = true
			c.priority, _ = parsePriority(e)
		}
	}
	return c, nil
}

func match() push2.Decision {
	switch push2.CallAction() {
	case push2.CallPropose:
		return push2.Decision{Push: true, Priority: push2.PriorityHigh, VoIP: true, Reason: "call"}
	case push2.CallRetract:
		return push2.Push(push2.PriorityHigh, "call retracted")
	}
	if !push2.Important() {
		return push2.Skip("not important")
	}
	cfg, _ := config.Get(push2.MatchElement, parseConfig)
	// Compared case-insensitively in place: a match call allocates as little
	// as it can, so the guest's Go runtime has next to nothing to collect.
	chat := push2.Chat()
	for _, v := range cfg.vips {
		if equalFold(v, chat) {
			return push2.Push(push2.PriorityHigh, "vip sender")
		}
	}
	if body := push2.Body(); body != "" {
		for _, k := range cfg.keywords {
			if containsFold(body, k) {
				return push2.Push(push2.PriorityHigh, "keyword")
			}
		}
	}
	if cfg.others {
		return push2.Push(cfg.priority, "other important message")
	}
	return push2.Skip("not from a vip and no keyword")
}

// lower is s with A–Z lowered.
func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}

// lowerASCII is c with A–Z lowered (the only case folding the profile
// does: JIDs and keywords are compared as in plugins/vip-c).
func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether a and b are equal with A–Z lowered.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

// containsFold reports whether sub occurs in s with A–Z lowered.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
