package host

import (
	"context"
	"errors"
	"strings"
	"sync"

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
}

type callKey struct{}

var callPool = sync.Pool{New: func() any { return new(call) }}

func newCall(m *Module, kind callKind, profile string) *call {
	c := callPool.Get().(*call)
	c.m, c.kind, c.profile = m, kind, profile
	return c
}

func (c *call) release() {
	out := c.out[:0]
	handles := c.handles[:0]
	*c = call{out: out, handles: handles}
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	callPool.Put(c)
}

func callFrom(ctx context.Context) *call {
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
	var steps []pathStep
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
