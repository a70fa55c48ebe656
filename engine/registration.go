package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/xmpp/jid"
)

// Registration is one device's push configuration: the parsed form of an
// <enable xmlns='urn:xmpp:push2:0'/> (push2.md "Client registers to receive
// push notifications").
//
// A Registration is immutable once returned by ParseEnable; re-enabling
// replaces it as a whole.
type Registration struct {
	Account string    // bare JID of the user
	ID      string    // the SASL2 client id, else the resource of the session
	Created time.Time // when it was (last) enabled; the oldest is evicted first
	Service string    // where notifications go: host, bare or full JID
	Client  string    // opaque, echoed in every notification
	Matches []*Match
	// Enable is the <enable/> as stored: what of the received element the
	// engine and the profiles read (see ParseEnable), at most
	// Limits.MaxEnableBytes serialized. The store keeps it and re-parses it
	// on load, so parsing rules live in one place.
	Enable *stanza.Element
	// Suspended: the server disabled the account; no pushes until it is
	// enabled again (Engine.SuspendAccount).
	Suspended bool
}

// Key returns the registration's identity within the store.
func (r *Registration) Key() RegKey { return RegKey{Account: r.Account, ID: r.ID} }

// RegKey identifies a registration.
type RegKey struct{ Account, ID string }

func (k RegKey) String() string { return k.Account + "#" + k.ID }

// Match is one <match/> of a registration.
type Match struct {
	Profile string
	Grace   time.Duration // zero: no grace period
	Filters []Filter
	Element *stanza.Element // the <match/> element, for profiles with their own children
	Send    *stanza.Element // the <send/> element
	SendNS  string
	// MatchProvisioned and SendProvisioned are what the match and the send
	// profile's Provision returned. They are not persisted: a registration
	// loaded from the store is provisioned again (see Profile).
	MatchProvisioned any
	SendProvisioned  any
}

// Limits bounds what one registration may contain. A zero field takes its
// default from DefaultLimits.
type Limits struct {
	MaxMatches     int
	MaxFilters     int
	MaxGrace       time.Duration
	MaxClientBytes int
	MaxSendBytes   int // serialized <send/> size
	// MaxEnableBytes bounds the serialized <enable/> as stored
	// (Registration.Enable). Every reload of an account's registrations
	// parses them again, so this also bounds what one registration costs
	// the engine per reload.
	MaxEnableBytes int
}

// checkStoredSize refuses a registration whose stored form is larger than
// lim allows, with policy-violation: the request is well-formed, this
// server just does not keep that much per device.
func checkStoredSize(lim Limits, stored *stanza.Element) error {
	max := lim.MaxEnableBytes
	fillZero(&max, DefaultLimits.MaxEnableBytes) // ParseEnable may get a partial Limits
	if n := stored.Size(); n > max {
		return stanza.NewError(stanza.Modify, stanza.CondPolicyViolation,
			"the registration is %d bytes as stored (<service/>, <client/> and the <match/> elements with everything in them); this server keeps at most %d bytes per registration", n, max)
	}
	return nil
}

// NormalizeJID returns the canonical string form of a JID (PRECIS-prepared
// by mellium), or an error for an invalid one.
//
// Results are cached: every event normalizes its account, its sender and
// filter JIDs, and PRECIS preparation was nearly half of an evaluation that
// pushes nothing, while the same few strings come back event after event.
// A cached result is the very value jid.Parse returned for the same input,
// so the cache cannot change an answer. Errors are not cached (bad input is
// rare, and must not fill the cache), nor inputs over maxCachedJID bytes;
// the cache is dropped whole when it reaches jidCacheSize entries, which
// bounds its memory without bookkeeping per entry.
func NormalizeJID(s string) (jid.JID, error) {
	return parseJID(strings.TrimSpace(s))
}

// parseJID is jid.Parse with the cache NormalizeJID describes; the engine
// calls it wherever it would call jid.Parse.
func parseJID(s string) (jid.JID, error) {
	p, err := lookupJID(s)
	return p.j, err
}

// bareJID is parseJID(s).Bare().String(), with the string cached too: the
// account and the sender of every event need it, and jid.JID.String
// allocates on each call.
func bareJID(s string) (string, error) {
	p, err := lookupJID(s)
	return p.bare, err
}

// parsedJID is a cache entry: jid.Parse's result and its bare form.
type parsedJID struct {
	j    jid.JID
	bare string
}

func lookupJID(s string) (parsedJID, error) {
	m := jidCache.Load()
	if v, ok := m.Load(s); ok {
		return v.(parsedJID), nil
	}
	j, err := jid.Parse(s)
	if err != nil {
		return parsedJID{j: j}, err
	}
	p := parsedJID{j: j, bare: j.Bare().String()}
	if len(s) > maxCachedJID {
		return p, nil
	}
	if jidCached.Add(1) > jidCacheSize {
		jidCached.Store(1)
		m = new(sync.Map)
		jidCache.Store(m)
	}
	m.Store(s, p)
	return p, nil
}

const (
	jidCacheSize = 4096
	maxCachedJID = 256
)

var (
	jidCache  atomic.Pointer[sync.Map]
	jidCached atomic.Int64 // entries stored in jidCache, about
)

func init() { jidCache.Store(new(sync.Map)) }

// ParseEnable validates an <enable/> element for account and session id and
// returns the registration. Nothing is stored here; the caller stores the
// result only if err is nil. Errors are *stanza.Error with a text naming the
// offending element.
//
// The registration keeps (in Registration.Enable, which is what the store
// gets) only what push2d reads: the text of <service/> and <client/>, and
// the <match/> elements whole, since match and send profiles (custom ones
// too) read their own children and attributes there. Children of <enable/>
// in other namespaces are ignored and not stored. A stored form over
// Limits.MaxEnableBytes is refused with policy-violation.
//
// An <enable/> in a namespace other than urn:xmpp:push2:0 goes to the send
// profile registered under that namespace if it is an EnableParser
// (XEP-0357), and is refused with feature-not-implemented otherwise.
func ParseEnable(ctx context.Context, reg *Registry, lim Limits, account, id string, enable *stanza.Element) (*Registration, error) {
	lim = lim.withDefaults()
	if enable.Name.Space != stanza.NSPush2 {
		return parseForeignEnable(ctx, reg, lim, account, enable)
	}
	if !enable.Is(stanza.NSPush2, "enable") {
		return nil, stanza.BadRequest("expected <enable xmlns='%s'/>", stanza.NSPush2)
	}
	acct, err := NormalizeJID(account)
	if err != nil || acct.Localpart() == "" {
		return nil, stanza.BadRequest("the account is not a valid bare JID")
	}
	acct = acct.Bare()
	if id == "" {
		return nil, stanza.BadRequest("the session has neither a SASL2 client id nor a resource")
	}
	stored := stanza.NewElement(stanza.NSPush2, "enable")
	for _, c := range enable.Children {
		switch {
		case c.Name.Space != stanza.NSPush2:
			// Foreign extensions are ignored, as XMPP expects; storing them
			// would make every reload parse them again.
		case c.Name.Local == "service" || c.Name.Local == "client":
			stored.Append(stanza.NewElement(stanza.NSPush2, c.Name.Local).WithText(c.Text))
		default:
			stored.Append(c)
		}
	}
	// Before any profile's Provision sees a <match/>.
	if err := checkStoredSize(lim, stored); err != nil {
		return nil, err
	}
	r := &Registration{Account: acct.String(), ID: id, Enable: stored}

	var services, clients []*stanza.Element
	for _, c := range stored.Children {
		switch c.Name.Local {
		case "service":
			services = append(services, c)
		case "client":
			clients = append(clients, c)
		case "match":
			if len(r.Matches) >= lim.MaxMatches {
				return nil, stanza.BadRequest("too many <match/> elements (at most %d)", lim.MaxMatches)
			}
			m, err := parseMatch(ctx, reg, lim, c, acct)
			if err != nil {
				return nil, err
			}
			r.Matches = append(r.Matches, m)
		default:
			return nil, stanza.BadRequest("unexpected element <%s/> in <enable/>", c.Name.Local)
		}
	}

	switch len(services) {
	case 0:
		return nil, stanza.BadRequest("<service/> is required")
	case 1:
	default:
		return nil, stanza.BadRequest("<service/> must appear once")
	}
	svc, err := NormalizeJID(services[0].Text)
	if err != nil || strings.TrimSpace(services[0].Text) == "" {
		return nil, stanza.BadRequest("<service/> is not a valid JID")
	}
	if svc.Bare().Equal(acct) {
		return nil, stanza.BadRequest("<service/> must not be the account itself")
	}
	r.Service = svc.String()

	switch len(clients) {
	case 0:
		return nil, stanza.BadRequest("<client/> is required")
	case 1:
	default:
		return nil, stanza.BadRequest("<client/> must appear once")
	}
	r.Client = clients[0].Text
	if strings.TrimSpace(r.Client) == "" {
		return nil, stanza.BadRequest("<client/> must not be empty")
	}
	if len(r.Client) > lim.MaxClientBytes {
		return nil, stanza.BadRequest("<client/> is longer than %d bytes", lim.MaxClientBytes)
	}
	if !utf8.ValidString(r.Client) {
		return nil, stanza.BadRequest("<client/> is not valid UTF-8")
	}
	if len(r.Matches) == 0 {
		return nil, stanza.BadRequest("at least one <match/> is required")
	}
	return r, nil
}

func parseMatch(ctx context.Context, reg *Registry, lim Limits, el *stanza.Element, acct jid.JID) (*Match, error) {
	uri, ok := el.LookupAttr("profile")
	if !ok || strings.TrimSpace(uri) == "" {
		return nil, stanza.BadRequest("<match/> needs a 'profile' attribute")
	}
	mp, ok := reg.Match(uri)
	if !ok {
		return nil, stanza.FeatureNotImplemented("match profile %q is not supported", uri)
	}
	m := &Match{Profile: uri, Element: el}
	var graces, sends []*stanza.Element
	seenFilter := map[string]bool{}
	for _, c := range el.Children {
		switch {
		case c.Is(stanza.NSPush2, "grace"):
			graces = append(graces, c)
		case c.Is(stanza.NSPush2, "filter"):
			if len(m.Filters) >= lim.MaxFilters {
				return nil, stanza.BadRequest("too many <filter/> elements (at most %d)", lim.MaxFilters)
			}
			f, err := parseFilter(c)
			if err != nil {
				return nil, err
			}
			if seenFilter[f.JID] {
				return nil, stanza.BadRequest("<filter jid='%s'/> appears twice", f.JID)
			}
			seenFilter[f.JID] = true
			m.Filters = append(m.Filters, f)
		case c.Name.Local == "send":
			sends = append(sends, c)
		}
		// Other children belong to the match profile (custom profiles may
		// define their own); its Provision judges them.
	}
	if len(graces) > 1 {
		return nil, stanza.BadRequest("<grace/> must appear at most once in a <match/>")
	}
	if len(graces) == 1 {
		s := strings.TrimSpace(graces[0].Text)
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, stanza.BadRequest("<grace/> must be a non-negative integer number of seconds")
		}
		g := time.Duration(n) * time.Second
		if g > lim.MaxGrace {
			return nil, stanza.BadRequest("<grace/> is longer than %d seconds", int(lim.MaxGrace/time.Second))
		}
		m.Grace = g
	}
	switch len(sends) {
	case 0:
		return nil, stanza.BadRequest("<match/> needs a <send/> element")
	case 1:
	default:
		return nil, stanza.BadRequest("<match/> must have exactly one <send/> element")
	}
	m.Send = sends[0]
	m.SendNS = m.Send.Name.Space
	if m.SendNS == "" || m.SendNS == stanza.NSPush2 {
		return nil, stanza.BadRequest("<send/> must carry the send profile's namespace")
	}
	if m.Send.Size() > lim.MaxSendBytes {
		return nil, stanza.BadRequest("<send/> is larger than %d bytes", lim.MaxSendBytes)
	}
	sp, ok := reg.Send(m.SendNS)
	if !ok {
		return nil, stanza.FeatureNotImplemented("send profile %q is not supported", m.SendNS)
	}
	var err error
	if m.MatchProvisioned, err = mp.Provision(ctx, el); err != nil {
		return nil, provisionError(ctx, err, "<match profile='"+uri+"'/>")
	}
	if m.SendProvisioned, err = sp.Provision(ctx, m.Send); err != nil {
		return nil, provisionError(ctx, err, "<send/>")
	}
	return m, nil
}

// provisionError is the stanza error for a Provision failure: the
// profile's own *stanza.Error, internal-server-error when the request's
// context ended (the registration may well be valid), else bad-request.
func provisionError(ctx context.Context, err error, where string) *stanza.Error {
	if _, ok := stanza.AsError(err); ctx.Err() != nil && !ok {
		return stanza.InternalServerError("%s: %v", where, ctx.Err())
	}
	return asBadRequest(err, where)
}

func asBadRequest(err error, where string) *stanza.Error {
	if se, ok := err.(*stanza.Error); ok {
		return se
	}
	return stanza.BadRequest("%s: %s", where, err.Error())
}
