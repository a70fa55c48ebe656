package host

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/host/internal/abi"
)

// callKind says which export a call runs; host functions use it to decide
// what is available (sdk/ABI.md §3, §7).
type callKind uint8

const (
	kindInit callKind = iota
	kindDescribe
	kindValidate
	kindPrepare
	kindMatch
	kindSend
)

func (k callKind) String() string {
	switch k {
	case kindInit:
		return abi.ExportInitialize
	case kindDescribe:
		return abi.ExportDescribe
	case kindValidate:
		return abi.ExportValidate
	case kindPrepare:
		return abi.ExportPrepare
	case kindMatch:
		return abi.ExportMatch
	case kindSend:
		return abi.ExportSend
	}
	return "?"
}

// call is the state of one guest call, reachable from host functions
// through the context wazero hands them. It lives exactly as long as the
// call: the guest cannot keep a handle across calls (sdk/ABI.md §6).
type call struct {
	// parent is the caller's context; the call itself is the context.Context
	// that wazero hands to host functions (Value answers callKey), so a call
	// costs no context allocation.
	parent context.Context

	kind    callKind
	m       *Module
	profile string

	stanza, match, send *stanza.Element
	ectx                *engine.Context
	mi                  *engine.MatchInput
	si                  *engine.SendInput
	facts               *engine.Facts
	decision            engine.Decision
	budget              int

	handles []*stanza.Element // dynamic handles, firstDynamic onwards

	out      []byte
	overflow bool
	reason   string
	hasReply bool // set_reason was called

	xmlEl  *stanza.Element // last el_xml serialization, for the retry
	xmlOut []byte

	steps [8]pathStep // el_find's parsed path, reused (longer paths allocate)

	// prevReason is the reason of the previous call that used this pooled
	// struct: guests mostly set the same few constant reasons, which then
	// cost set_reason no allocation and no cleaning.
	prevReason string
}

type callKey struct{}

// The context.Context of a running call: the caller's, plus the call
// under callKey.
func (c *call) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *call) Done() <-chan struct{}       { return c.parent.Done() }
func (c *call) Err() error                  { return c.parent.Err() }
func (c *call) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.parent.Value(key)
}

var callPool = sync.Pool{New: func() any { return new(call) }}

func newCall(m *Module, kind callKind, profile string) *call {
	c := callPool.Get().(*call)
	c.m, c.kind, c.profile = m, kind, profile
	return c
}

func (c *call) release() {
	out := c.out[:0]
	handles := c.handles[:0]
	prev := c.reason
	if prev == "" {
		prev = c.prevReason
	}
	clear(handles[:cap(handles)]) // the elements belong to the caller's input
	*c = call{out: out, handles: handles, prevReason: prev}
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	callPool.Put(c)
}

func callFrom(ctx context.Context) *call {
	if c, ok := ctx.(*call); ok {
		return c
	}
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

func (c *call) getFacts() *engine.Facts {
	if c.facts == nil {
		switch {
		case c.mi != nil:
			c.facts = c.mi.Facts()
		case c.si != nil:
			c.facts = c.si.Facts()
		case c.stanza != nil:
			c.facts = engine.Inspect(c.stanza, c.ectx)
		}
	}
	return c.facts
}

// element resolves a handle; nil means the handle is not valid in this call.
func (c *call) element(h int32) *stanza.Element {
	switch h {
	case abi.HandleStanza:
		return c.stanza
	case abi.HandleMatch:
		return c.match
	case abi.HandleSend:
		return c.send
	case abi.HandleMessage:
		if f := c.getFacts(); f != nil {
			return f.Message
		}
		return nil
	}
	i := int(h - abi.FirstDynamic)
	if i >= 0 && i < len(c.handles) {
		return c.handles[i]
	}
	return nil
}

// handle returns the handle of e, reusing an existing one so that a guest
// walking the same elements repeatedly does not fill the table.
func (c *call) handle(e *stanza.Element) int32 {
	switch e {
	case nil:
		return abi.StatusNotFound
	case c.stanza:
		return abi.HandleStanza
	case c.match:
		return abi.HandleMatch
	case c.send:
		return abi.HandleSend
	}
	for i, h := range c.handles {
		if h == e {
			return abi.FirstDynamic + int32(i)
		}
	}
	if len(c.handles) >= abi.MaxHandles {
		return abi.StatusTooLarge
	}
	c.handles = append(c.handles, e)
	return abi.FirstDynamic + int32(len(c.handles)-1)
}

// pathStep is one step of an element path (sdk/ABI.md §6): "{ns}local",
// "local" (any namespace), "{ns}*" or "*".
type pathStep struct {
	ns, local string
	anyNS     bool
}

func (s pathStep) matches(e *stanza.Element) bool {
	return (s.local == "*" || s.local == e.Name.Local) && (s.anyNS || s.ns == e.Name.Space)
}

var errBadPath = errors.New("malformed element path")

// parsePath parses an element path. Namespaces go in braces so that the '/'
// of an http: namespace needs no escaping.
func parsePath(s string) ([]pathStep, error) {
	return appendPath(nil, s)
}

// appendPath appends the steps of path s to steps.
func appendPath(steps []pathStep, s string) ([]pathStep, error) {
	for len(s) > 0 {
		st := pathStep{anyNS: true}
		if s[0] == '{' {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return nil, errBadPath
			}
			st.ns, st.anyNS = s[1:end], false
			s = s[end+1:]
		}
		end := strings.IndexByte(s, '/')
		if end < 0 {
			end = len(s)
		}
		st.local = s[:end]
		if st.local == "" || strings.ContainsAny(st.local, "{}") {
			return nil, errBadPath
		}
		steps = append(steps, st)
		s = s[end:]
		if len(s) > 0 {
			s = s[1:]
			if s == "" {
				return nil, errBadPath
			}
		}
	}
	return steps, nil
}

// findPath returns the first element in document order that the path
// reaches from e, backtracking over siblings: "a/b" finds the b inside the
// second a when the first a has none.
func findPath(e *stanza.Element, steps []pathStep) *stanza.Element {
	if len(steps) == 0 {
		return e
	}
	for _, ch := range e.Children {
		if steps[0].matches(ch) {
			if r := findPath(ch, steps[1:]); r != nil {
				return r
			}
		}
	}
	return nil
}

// FindPath resolves an element path of sdk/ABI.md §6 ("{ns}local/local/*")
// from e, as push2.el_find does; the case runner uses it for expectations.
func FindPath(e *stanza.Element, path string) (*stanza.Element, error) {
	steps, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	return findPath(e, steps), nil
}

// isRegistration reports whether e is the registration's <match/> or
// <send/>, which outlive the call (the engine keeps them with the
// registration), unlike the stanza.
func (c *call) isRegistration(e *stanza.Element) bool {
	return e != nil && (e == c.match || e == c.send)
}

// xmlCacheSize bounds Module.marshal's cache: the <match/> and <send/>
// elements whose serialization the module's guests read last.
const xmlCacheSize = 16

// xmlCache keeps the serializations of registration elements that guests
// read with el_xml, so a guest that caches its parsed configuration by the
// bytes of <match/> (sdk/ABI.md §14) costs the host no serialization per
// call. Entries hold their elements: a key is never a freed element's
// address reused by another one. Registration elements are never modified
// after parsing (a changed registration is a new element).
type xmlCache struct {
	mu      sync.Mutex
	next    int
	entries [xmlCacheSize]struct {
		el  *stanza.Element
		xml []byte
	}
}

// marshal returns e serialized; the result must not be modified.
func (m *Module) marshal(e *stanza.Element, cacheable bool) []byte {
	if !cacheable {
		return e.Marshal()
	}
	x := &m.xml
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range x.entries {
		if x.entries[i].el == e {
			return x.entries[i].xml
		}
	}
	b := e.Marshal()
	x.entries[x.next].el, x.entries[x.next].xml = e, b
	x.next = (x.next + 1) % xmlCacheSize
	return b
}
