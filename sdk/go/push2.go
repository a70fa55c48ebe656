// Package push2 is the Go SDK for push2 WebAssembly profiles: it wraps the
// raw imports and exports of sdk/ABI.md (ABI v1) into Go types. It has no
// dependencies beyond the standard library.
//
// A plugin is a main package built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o vip.wasm ./plugins/vip-go
//
// It registers its profiles in init (sdk/ABI.md §3: the host calls
// push2_describe once at load, after _initialize ran the inits):
//
//	func init() {
//		push2.RegisterMatch(push2.MatchProfile{URI: "urn:example:vip:0", Match: vip})
//	}
//	func main() {}
//
// Everything a call reads (elements, facts, fields) is valid only during
// that call: the host forgets handles when the call returns (sdk/ABI.md §6).
package push2

import (
	"errors"
	"strconv"
	"time"
	"unsafe"
)

// Status codes of sdk/ABI.md §5.
const (
	StatusOK          int32 = 0
	StatusNotFound    int32 = -1
	StatusInvalid     int32 = -2
	StatusTooLarge    int32 = -3
	StatusFailed      int32 = -4
	StatusUnavailable int32 = -5
	StatusRateLimited int32 = -6
)

// StatusError is a negative status returned by a host function.
type StatusError int32

func (e StatusError) Error() string {
	switch int32(e) {
	case StatusNotFound:
		return "push2: not found"
	case StatusInvalid:
		return "push2: invalid argument"
	case StatusTooLarge:
		return "push2: too large"
	case StatusFailed:
		return "push2: operation failed"
	case StatusUnavailable:
		return "push2: unavailable in this call"
	case StatusRateLimited:
		return "push2: rate limited"
	}
	return "push2: status " + strconv.Itoa(int(e))
}

// Priority of a match decision (sdk/ABI.md §4).
type Priority int32

// Priorities. PriorityDefault lets the engine choose (normal).
const (
	PriorityDefault Priority = 0
	PriorityLow     Priority = 1
	PriorityNormal  Priority = 2
	PriorityHigh    Priority = 3
)

// Decision is a match profile's answer.
type Decision struct {
	Push     bool
	Priority Priority
	VoIP     bool   // a call: the notification carries <voip/>
	Reason   string // short, for --explain and metrics; at most 256 bytes
}

func (d Decision) word() int32 {
	var w int32
	if d.Push {
		w |= 1
	}
	w |= int32(d.Priority&3) << 1
	if d.VoIP {
		w |= 8
	}
	return w
}

// Push returns a decision to push with priority p and reason.
func Push(p Priority, reason string) Decision {
	return Decision{Push: true, Priority: p, Reason: reason}
}

// Skip returns a decision not to push, with reason.
func Skip(reason string) Decision { return Decision{Reason: reason} }

// Element is a handle to an element of the input, valid during one call
// (sdk/ABI.md §6). The zero Element is "none".
type Element int32

// Predefined handles.
const (
	Stanza       Element = 1 // the stanza
	MatchElement Element = 2 // the registration's <match/>
	SendElement  Element = 3 // the registration's <send/> (send calls)
	Message      Element = 4 // the message the facts describe (carbons unwrapped)
)

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func sptr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// readString implements the retry of sdk/ABI.md §4 "Memory ownership": try
// a stack buffer, and if the host says it needs more, retry with exactly
// that much.
func readString(f func(buf unsafe.Pointer, n int32) int32) (string, int32) {
	var small [128]byte
	n := f(unsafe.Pointer(&small[0]), int32(len(small)))
	if n < 0 {
		return "", n
	}
	if int(n) <= len(small) {
		return string(small[:n]), StatusOK
	}
	for {
		big := make([]byte, n)
		m := f(ptr(big), n)
		if m < 0 {
			return "", m
		}
		if m <= n {
			return string(big[:m]), StatusOK
		}
		n = m
	}
}

// Find returns the first element the path reaches from e, or false. A path
// is steps separated by '/', each "{namespace}name", "name" (any namespace)
// or "*" (sdk/ABI.md §6): "{urn:example:vip}vip".
func (e Element) Find(path string) (Element, bool) {
	h := rawElFind(int32(e), sptr(path), int32(len(path)))
	return Element(max(h, 0)), h > 0
}

// Child returns the i-th child element of e, or false.
func (e Element) Child(i int) (Element, bool) {
	h := rawElChild(int32(e), int32(i))
	return Element(max(h, 0)), h > 0
}

// Children returns the child elements of e named name, written as one path
// step ("{urn:example:vip}vip", "vip" in any namespace, "*"):
// Children("{urn:example:vip}vip") lists every vip child. An empty name
// lists all children.
func (e Element) Children(name string) []Element {
	var out []Element
	for i := 0; ; i++ {
		c, ok := e.Child(i)
		if !ok {
			return out
		}
		if name == "" || c.is(name) {
			out = append(out, c)
		}
	}
}

// is reports whether e matches one path step: "{ns}local" or "local".
// readEq reports whether the value f reads is want, without allocating
// when it fits in a small buffer.
func readEq(want string, f func(buf unsafe.Pointer, n int32) int32) bool {
	var small [128]byte
	n := f(unsafe.Pointer(&small[0]), int32(len(small)))
	if n < 0 || int(n) != len(want) {
		return false
	}
	if int(n) <= len(small) {
		return string(small[:n]) == want
	}
	s, st := readString(f)
	return st == StatusOK && s == want
}

// Is reports whether the element matches one path step of sdk/ABI.md §6:
// "{ns}name", "name" (any namespace), "{ns}*" or "*".
func (e Element) Is(step string) bool { return e.is(step) }

func (e Element) is(step string) bool {
	ns, local, anyNS := "", step, true
	if len(step) > 0 && step[0] == '{' {
		for i := 1; i < len(step); i++ {
			if step[i] == '}' {
				ns, local, anyNS = step[1:i], step[i+1:], false
				break
			}
		}
	}
	return (local == "*" || readEq(local, func(b unsafe.Pointer, n int32) int32 { return rawElName(int32(e), b, n) })) &&
		(anyNS || readEq(ns, func(b unsafe.Pointer, n int32) int32 { return rawElNS(int32(e), b, n) }))
}

// Name returns the local name of e.
func (e Element) Name() string {
	s, _ := readString(func(b unsafe.Pointer, n int32) int32 { return rawElName(int32(e), b, n) })
	return s
}

// Namespace returns the namespace of e.
func (e Element) Namespace() string {
	s, _ := readString(func(b unsafe.Pointer, n int32) int32 { return rawElNS(int32(e), b, n) })
	return s
}

// Text returns the character data directly inside e.
func (e Element) Text() string {
	s, _ := readString(func(b unsafe.Pointer, n int32) int32 { return rawElText(int32(e), b, n) })
	return s
}

// Attr returns the attribute name of e ("{ns}name" for a namespaced one).
func (e Element) Attr(name string) (string, bool) {
	s, st := readString(func(b unsafe.Pointer, n int32) int32 {
		return rawElAttr(int32(e), sptr(name), int32(len(name)), b, n)
	})
	return s, st == StatusOK
}

// XML returns e serialized, namespaces declared: the raw bytes, for guests
// that parse themselves.
func (e Element) XML() string {
	s, _ := readString(func(b unsafe.Pointer, n int32) int32 { return rawElXML(int32(e), b, n) })
	return s
}

// Fact ids of sdk/ABI.md §7.
const (
	FactKind              int32 = 1
	FactHasBody           int32 = 2
	FactEncrypted         int32 = 3
	FactCall              int32 = 4
	FactChatState         int32 = 5
	FactReceipt           int32 = 6
	FactCorrection        int32 = 7
	FactSentCarbon        int32 = 8
	FactHeadline          int32 = 9
	FactError             int32 = 10
	FactReflection        int32 = 11
	FactGroupchat         int32 = 12
	FactInvite            int32 = 13
	FactMention           int32 = 14
	FactReply             int32 = 15
	FactContentOnly       int32 = 16
	FactImportant         int32 = 17
	FactSuggestedPriority int32 = 18
	FactTrigger           int32 = 19
	FactDecisionPriority  int32 = 20
	FactDecisionVoIP      int32 = 21
	FactBudget            int32 = 22
)

// Call actions, the values of FactCall.
const (
	CallNone    = 0
	CallPropose = 1
	CallRetract = 2
	CallOther   = 3
)

// Fact returns fact id: a flag (0/1) or a small number, or a negative
// status.
func Fact(id int32) int32 {
	if id < 1 || id > factCount {
		return rawFact(id)
	}
	if !cur.factsLoaded {
		if rawFacts(1, factCount, unsafe.Pointer(&cur.facts[0])) < 0 {
			return rawFact(id)
		}
		cur.factsLoaded = true
	}
	return cur.facts[id-1]
}

func flag(id int32) bool { return Fact(id) == 1 }

// factCount is the highest fact id this SDK knows, read in one push2.facts
// call.
const factCount = FactBudget

// fieldMask: every field this SDK knows, read in one push2.fields call.
const fieldMask = 1<<FieldAccount | 1<<FieldTrigger | 1<<FieldArchiveID | 1<<FieldNick | 1<<FieldFrom |
	1<<FieldChat | 1<<FieldBody | 1<<FieldType | 1<<FieldProfile | 1<<FieldArchiveBy

// callCache is what the current call has read in one go (sdk/ABI.md §7
// "Batched reads"); the exports reset it when a call starts.
type callCache struct {
	facts        [factCount]int32
	factsLoaded  bool
	fields       [32]string
	fieldsLoaded bool
	fieldsOK     bool
	record       []byte // push2.fields' buffer, reused across calls
}

var cur callCache

// begin forgets what the previous call read.
func begin() {
	cur.factsLoaded, cur.fieldsLoaded = false, false
}

func loadFields() {
	cur.fieldsLoaded, cur.fieldsOK = true, false
	if cap(cur.record) < 1024 {
		cur.record = make([]byte, 1024)
	}
	rec := cur.record[:cap(cur.record)]
	n := rawFields(fieldMask, ptr(rec), int32(len(rec)))
	if n > int32(len(rec)) {
		cur.record = make([]byte, n)
		rec = cur.record
		n = rawFields(fieldMask, ptr(rec), int32(len(rec)))
	}
	if n < 0 || n > int32(len(rec)) {
		return
	}
	all := string(rec[:n]) // one allocation; the fields are substrings of it
	at := 0
	for id := 1; id < 32; id++ {
		if fieldMask&(1<<id) == 0 {
			continue
		}
		if at+4 > len(all) {
			return
		}
		l := int32(uint32(all[at]) | uint32(all[at+1])<<8 | uint32(all[at+2])<<16 | uint32(all[at+3])<<24)
		at += 4
		if l < 0 {
			cur.fields[id] = ""
			continue
		}
		if at+int(l) > len(all) {
			return
		}
		cur.fields[id] = all[at : at+int(l)]
		at += int(l)
	}
	cur.fieldsOK = true
}

// HasBody reports whether the message has a non-empty body.
func HasBody() bool { return flag(FactHasBody) }

// Encrypted reports an OMEMO, OX, PGP or SCE payload.
func Encrypted() bool { return flag(FactEncrypted) }

// CallAction returns CallNone, CallPropose, CallRetract or CallOther.
func CallAction() int32 { return max(Fact(FactCall), 0) }

// Groupchat reports a MUC message.
func Groupchat() bool { return flag(FactGroupchat) }

// Mention reports that the message mentions the user.
func Mention() bool { return flag(FactMention) }

// Important reports what urn:xmpp:push2:match:important would push.
func Important() bool { return flag(FactImportant) }

// SuggestedPriority is the priority the built-in profiles would use.
func SuggestedPriority() Priority { return Priority(max(Fact(FactSuggestedPriority), 0)) }

// Field ids of sdk/ABI.md §7.
const (
	FieldAccount   int32 = 1
	FieldTrigger   int32 = 2
	FieldArchiveID int32 = 3
	FieldNick      int32 = 4
	FieldFrom      int32 = 5
	FieldChat      int32 = 6
	FieldBody      int32 = 7
	FieldType      int32 = 8
	FieldProfile   int32 = 9
	FieldArchiveBy int32 = 10
)

// Field returns a context or stanza field ("" when absent).
func Field(id int32) string {
	if id > 0 && id < 32 && fieldMask&(1<<id) != 0 {
		if !cur.fieldsLoaded {
			loadFields()
		}
		if cur.fieldsOK {
			return cur.fields[id]
		}
	}
	s, _ := readString(func(b unsafe.Pointer, n int32) int32 { return rawField(id, b, n) })
	return s
}

// Account is the bare JID of the user.
func Account() string { return Field(FieldAccount) }

// From is the full JID of the message's sender.
func From() string { return Field(FieldFrom) }

// Chat is the bare JID of the conversation (the room, in a MUC).
func Chat() string { return Field(FieldChat) }

// Body is the message body.
func Body() string { return Field(FieldBody) }

// ArchiveID is the id the user's archive gave the stanza, if any.
func ArchiveID() string { return Field(FieldArchiveID) }

// Now is the evaluation time (the engine's, so test cases can fix it).
func Now() time.Time { return time.UnixMilli(rawNowMS()) }

// Log levels of sdk/ABI.md §8.
const (
	LevelDebug int32 = 0
	LevelInfo  int32 = 1
	LevelWarn  int32 = 2
	LevelError int32 = 3
)

// Log writes a line to the daemon's log, tagged with the module; lines
// beyond the host's rate limit are dropped (and counted).
func Log(level int32, msg string) { rawLog(level, sptr(msg), int32(len(msg))) }

// SetReason sets the reason of the current decision or validation error.
func SetReason(s string) { rawSetReason(sptr(s), int32(len(s))) }

// Output appends b to the call's output (a send result).
func Output(b []byte) error {
	if st := rawOutput(ptr(b), int32(len(b))); st < 0 {
		return StatusError(st)
	}
	return nil
}

// WebPushEncrypt seals plaintext for a subscription (RFC 8291) with the
// host's implementation: uaPublic is the 65-byte P-256 point, authSecret
// the 16-byte secret (sdk/ABI.md §9).
func WebPushEncrypt(uaPublic, authSecret, plaintext []byte) ([]byte, error) {
	n := int32(len(plaintext) + 4096 + 128) // the host pads to size classes
	for {
		out := make([]byte, n)
		m := rawEncrypt(ptr(uaPublic), int32(len(uaPublic)), ptr(authSecret), int32(len(authSecret)), ptr(plaintext), int32(len(plaintext)), ptr(out), n)
		if m < 0 {
			return nil, StatusError(m)
		}
		if m <= n {
			return out[:m], nil
		}
		n = m
	}
}

// SignJWT signs a VAPID JWT (RFC 8292) with the host's implementation and
// returns the token and the base64url raw public key.
func SignJWT(alg, pkcs8b64 string, claimsJSON string) (token, publicKey string, err error) {
	s, st := readString(func(b unsafe.Pointer, n int32) int32 {
		return rawJWT(sptr(alg), int32(len(alg)), sptr(pkcs8b64), int32(len(pkcs8b64)), sptr(claimsJSON), int32(len(claimsJSON)), b, n)
	})
	if st < 0 {
		return "", "", StatusError(st)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], nil
		}
	}
	return "", "", errors.New("push2: malformed jwt_sign result")
}

// Budget is the number of bytes a send result may take (send calls only).
func Budget() int { return int(max(rawFact(FactBudget), 0)) }
