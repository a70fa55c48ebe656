package profiles

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles/webpush"
	"github.com/push2/push2/profiles/xep0357"
)

// This file is the send profile urn:xmpp:push2:send:sce+rfc8291+rfc8292:0
// (push2.md "Send profiles"): the stanza, wrapped in XEP-0297 <forwarded/>
// inside a XEP-0420 <envelope/>, encrypted per RFC 8291 to the client's
// subscription, with an optional RFC 8292 (VAPID) JWT. docs/encrypted.md
// describes the format, the size computation and the padding buckets.

// Bounds on the JWT claims a registration may carry. Claims are echoed into
// every token, so they are kept small: the token travels in each
// notification and counts against its 4096 bytes.
const (
	MaxJWTClaims     = 8
	MaxJWTClaimName  = 64
	MaxJWTClaimValue = 512
)

const (
	// delayStampLayout is the XEP-0082 DateTime profile, in UTC.
	delayStampLayout = "2006-01-02T15:04:05Z"
	// encryptedWrapper is the <encrypted/> child without its payload, as
	// serialized inside <notification/>: 73 bytes.
	encryptedWrapper   = `<encrypted xmlns="` + stanza.NSRFC8291 + `"><payload></payload></encrypted>`
	encryptedWrapperSz = len(encryptedWrapper)
)

// supportedJWTAlgs are the <jwt-alg/> values webpush.ParseVAPIDKey accepts.
// RFC 8292 §2 mandates ES256; the others are for deployments that want them.
var supportedJWTAlgs = map[string]bool{"ES256": true, "ES384": true, "ES512": true}

// EncryptedOptions configures the encrypted send profile. The zero value is
// ready to use.
type EncryptedOptions struct {
	// Subject is the JWT "sub" claim (RFC 8292 §2.1: a contact URI for the
	// application server's operator, such as "mailto:ops@example.org").
	// Empty means "xmpp:" followed by the domain of the account the
	// notification is for. A registration's own <jwt-claim name='sub'/>
	// takes precedence.
	Subject string
	// Clock gives the time tokens are signed at; nil means time.Now. The
	// <delay/> stamp of the forwarded stanza is the event's Context.Now.
	Clock func() time.Time
	// Signer signs and caches VAPID tokens. Nil means one Signer shared by
	// every profile built with a nil Signer, so that tokens are cached
	// across registrations with the same key and claims.
	Signer *webpush.Signer
}

// Options configures the built-in profiles; see BuiltinWith.
type Options struct {
	Encrypted EncryptedOptions
	// XEP0357, if set, adds the XEP-0357 profile pair (package
	// profiles/xep0357) with these options, so urn:xmpp:push:0 clients are
	// served; nil refuses them with feature-not-implemented.
	XEP0357 *xep0357.Options
}

// BuiltinWith is Builtin with the configurable profiles built from opts.
// It is the one place that builds the profile set: push2d (from its
// configuration) and push2 simulate both call it.
func BuiltinWith(opts Options) engine.ProfileSet {
	set := engine.ProfileSet{
		Match: []engine.MatchProfile{All(), Important(), Archived(), ArchivedWithBody()},
		Send:  []engine.SendProfile{NotifyOnly(), Encrypted(opts.Encrypted)},
	}
	if opts.XEP0357 != nil {
		x := xep0357.Set(*opts.XEP0357)
		set.Match = append(set.Match, x.Match...)
		set.Send = append(set.Send, x.Send...)
	}
	return set
}

// sharedSigner is the token cache of every encrypted profile built without
// its own Signer.
var sharedSigner = webpush.NewSigner(0)

type encrypted struct {
	subject string
	clock   func() time.Time
	signer  *webpush.Signer
}

var (
	_ engine.SendProfile    = (*encrypted)(nil)
	_ engine.FitChecker     = (*encrypted)(nil)
	_ engine.TokenRefresher = (*encrypted)(nil)
)

// Encrypted returns the urn:xmpp:push2:send:sce+rfc8291+rfc8292:0 send
// profile.
func Encrypted(opts EncryptedOptions) engine.SendProfile {
	p := &encrypted{subject: opts.Subject, clock: opts.Clock, signer: opts.Signer}
	if p.clock == nil {
		p.clock = time.Now
	}
	if p.signer == nil {
		p.signer = sharedSigner
	}
	return p
}

func (*encrypted) ID() string { return SendEncrypted }

// EncryptedKeys is the Provision result of the encrypted profile: a
// registration's subscription keys, parsed and checked at enable time. It
// holds secrets (the authentication secret and the VAPID private key); its
// String method redacts them and nothing in it is ever logged.
type EncryptedKeys struct {
	Keys webpush.Keys
	// VAPID is the signing key, nil when the registration has no
	// <jwt-alg/>.
	VAPID *webpush.VAPIDKey
	// Claims are the registration's <jwt-claim/>s, names unique.
	Claims []webpush.Claim
	// JWTKey is the value of the <jwt key='…'/> attribute: the VAPID
	// public key as an uncompressed point, in standard base64.
	JWTKey string
}

// String redacts the secrets.
func (k *EncryptedKeys) String() string {
	if k == nil {
		return "profiles.EncryptedKeys(nil)"
	}
	return fmt.Sprintf("profiles.EncryptedKeys{Keys: %v, VAPID: %v, Claims: %d}", k.Keys, k.VAPID, len(k.Claims))
}

// GoString is String for %#v.
func (k *EncryptedKeys) GoString() string { return k.String() }

func badSend(format string, args ...any) *stanza.Error {
	return stanza.BadRequest(format, args...)
}

// reason turns a webpush error into the tail of a stanza error text.
// webpush guarantees that its errors never contain key material.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), "webpush: ")
}

// Provision validates the <send/> element at enable and reload time:
//
//	<send xmlns='urn:xmpp:push2:send:sce+rfc8291+rfc8292:0'>
//	  <ua-public>base64: uncompressed P-256 point, 65 bytes</ua-public>
//	  <auth-secret>base64: 16 bytes</auth-secret>
//	  <jwt-alg>ES256</jwt-alg>                       optional
//	  <jwt-key>base64 PKCS#8 body</jwt-key>          iff jwt-alg
//	  <jwt-claim name='aud'>https://…</jwt-claim>    0..8, only with jwt-alg
//	</send>
//
// Base64 may use either alphabet, padded or not, with whitespace. Claim
// names are unique, at most 64 bytes; values at most 512 bytes. "aud" is
// required with <jwt-alg/> (RFC 8292 §2: push services refuse a token
// without it). "sub" overrides the server's default subject. "exp", "nbf"
// and "iat" are refused: a time fixed at enable time would make every later
// token invalid, and the server sets "exp" itself on each signature.
//
// Errors are *stanza.Error bad-request naming the element at fault;
// they never contain any part of the keys.
func (p *encrypted) Provision(ctx context.Context, send *stanza.Element) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var uaPublic, authSecret, jwtAlg, jwtKey *stanza.Element
	var claims []*stanza.Element
	once := func(slot **stanza.Element, c *stanza.Element) error {
		if *slot != nil {
			return badSend("<%s/> must appear at most once in <send/>", c.Name.Local)
		}
		*slot = c
		return nil
	}
	for _, c := range send.Children {
		if c.Name.Space != SendEncrypted {
			continue // extensions in other namespaces are ignored, as XMPP expects
		}
		var err error
		switch c.Name.Local {
		case "ua-public":
			err = once(&uaPublic, c)
		case "auth-secret":
			err = once(&authSecret, c)
		case "jwt-alg":
			err = once(&jwtAlg, c)
		case "jwt-key":
			err = once(&jwtKey, c)
		case "jwt-claim":
			if len(claims) >= MaxJWTClaims {
				err = badSend("too many <jwt-claim/> elements (at most %d)", MaxJWTClaims)
			}
			claims = append(claims, c)
		default:
			err = badSend("unexpected element <%s/> in <send/>", truncateName(c.Name.Local))
		}
		if err != nil {
			return nil, err
		}
	}

	k := &EncryptedKeys{}
	if uaPublic == nil {
		return nil, badSend("<ua-public/> is required")
	}
	raw, err := webpush.DecodeBase64(uaPublic.Text)
	if err != nil {
		return nil, badSend("<ua-public/> is not valid base64 (standard or URL-safe alphabet)")
	}
	if k.Keys.UAPublic, err = webpush.ParseUAPublic(raw); err != nil {
		return nil, badSend("<ua-public/>: %s", reason(err))
	}
	if authSecret == nil {
		return nil, badSend("<auth-secret/> is required")
	}
	if k.Keys.AuthSecret, err = webpush.DecodeBase64(authSecret.Text); err != nil {
		return nil, badSend("<auth-secret/> is not valid base64 (standard or URL-safe alphabet)")
	}
	if err := webpush.ParseAuthSecret(k.Keys.AuthSecret); err != nil {
		return nil, badSend("<auth-secret/>: %s", reason(err))
	}

	switch {
	case jwtAlg == nil && jwtKey != nil:
		return nil, badSend("<jwt-key/> is given without <jwt-alg/>")
	case jwtAlg == nil && len(claims) > 0:
		return nil, badSend("<jwt-claim/> is given without <jwt-alg/>")
	case jwtAlg == nil:
		return k, nil
	case jwtKey == nil:
		return nil, badSend("<jwt-key/> is required with <jwt-alg/>")
	}
	alg := strings.TrimSpace(jwtAlg.Text)
	if !supportedJWTAlgs[alg] {
		return nil, badSend("<jwt-alg/> must be ES256 (RFC 8292 §2; ES384 and ES512 are accepted too)")
	}
	if k.VAPID, err = webpush.ParseVAPIDKey(alg, jwtKey.Text); err != nil {
		return nil, badSend("<jwt-key/> is not a PKCS#8 key for %s: %s", alg, reason(err))
	}
	k.JWTKey = base64.StdEncoding.EncodeToString(k.VAPID.PublicRaw())

	seen := make(map[string]bool, len(claims))
	for _, c := range claims {
		name, ok := c.LookupAttr("name")
		name = strings.TrimSpace(name)
		value := strings.TrimSpace(c.Text)
		switch {
		case !ok || name == "":
			return nil, badSend("<jwt-claim/> needs a non-empty 'name' attribute")
		case len(name) > MaxJWTClaimName:
			return nil, badSend("a <jwt-claim/> name is longer than %d bytes", MaxJWTClaimName)
		case seen[name]:
			return nil, badSend("<jwt-claim name=%q/> appears more than once", name)
		case name == "exp" || name == "nbf" || name == "iat":
			return nil, badSend("<jwt-claim name=%q/> cannot be registered: the server sets the token's lifetime (exp, at most 24 hours ahead) on each signature", name)
		case value == "":
			return nil, badSend("<jwt-claim name=%q/> is empty", name)
		case len(value) > MaxJWTClaimValue:
			return nil, badSend("<jwt-claim name=%q/> is longer than %d bytes", name, MaxJWTClaimValue)
		}
		seen[name] = true
		k.Claims = append(k.Claims, webpush.Claim{Name: name, Value: value})
	}
	if !seen["aud"] {
		return nil, badSend("<jwt-claim name='aud'/> is required with <jwt-alg/>: the origin of the push resource (RFC 8292 §2)")
	}
	return k, nil
}

func truncateName(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// Fits implements engine.FitChecker: the minimal form of a typical message
// (what minimize always keeps: sender, recipient, type, id, the archive's
// stanza-id, a body of one character) must fit in budget, or nearly every
// push of this registration would fail. It signs (and caches) the JWT the
// pushes will use.
func (p *encrypted) Fits(provisioned any, account string, budget int) error {
	st := stanza.NewElement(stanza.NSClient, "message",
		"from", "contact@"+domainPart(account)+"/device-0123456789",
		"to", account, "type", "chat", "id", "01234567-89ab-cdef-0123-456789abcdef")
	st.Append(
		stanza.NewElement(stanza.NSClient, "body").WithText("."),
		stanza.NewElement(stanza.NSStanzaID, "stanza-id", "by", account, "id", "0123456789abcdefghijklmn"),
	)
	_, err := p.Send(context.Background(), &engine.SendInput{
		Stanza:      st,
		Context:     &engine.Context{Account: account},
		Decision:    engine.Decision{Push: true, Priority: engine.PriorityNormal},
		Provisioned: provisioned,
		Budget:      budget,
	})
	if err != nil {
		return errors.New("a typical message would not fit even minimized: the JWT and the encryption overhead take too much room")
	}
	return nil
}

// Send builds <encrypted><payload/></encrypted> and, with a VAPID key,
// <jwt key='…'>TOKEN</jwt>, so that together they take at most in.Budget
// bytes: the token is signed (or taken from the Signer's cache) first, the
// payload gets what is left, the stanza is minimized to fit (see minimize, minimize.go)
// and the RFC 8188 padding rounds the body up to its bucket (see
// webpush.BucketPad).
func (p *encrypted) Send(ctx context.Context, in *engine.SendInput) ([]*stanza.Element, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if in.Stanza == nil {
		return nil, errors.New("encrypted: no stanza")
	}
	keys, ok := in.Provisioned.(*EncryptedKeys)
	if !ok || keys == nil {
		// Not provisioned by the engine (a caller outside the pipeline):
		// validate now.
		v, err := p.Provision(ctx, in.Send)
		if err != nil {
			return nil, err
		}
		keys = v.(*EncryptedKeys)
	}
	c := in.Context
	if c == nil {
		c = &engine.Context{}
	}
	now := c.Now
	if now.IsZero() {
		now = p.clock()
	}

	budget := in.Budget
	var jwt *stanza.Element
	if keys.VAPID != nil {
		token, err := p.signer.Sign(keys.VAPID, keys.Claims, p.subjectFor(c.Account), p.clock())
		if err != nil {
			return nil, fmt.Errorf("encrypted: %s", reason(err))
		}
		jwt = stanza.NewElement(stanza.NSPush2, "jwt", "key", keys.JWTKey).WithText(token)
		budget -= jwt.SizeIn(stanza.NSPush2)
	}
	maxBody := MaxEncryptedBody(budget)
	if maxBody < webpush.Overhead {
		return nil, fmt.Errorf("encrypted: %d bytes are left for the payload, too few for any encrypted body", max(budget, 0))
	}

	// The pipeline's facts (already computed for the match profiles) name
	// the archive id: the stanza is not inspected again.
	env, keep := envelope(in.Stanza, c, now, in.Facts().ArchiveID)
	fits := func(size int) bool { return webpush.EncryptedSize(size, 0) <= maxBody }
	_, size, err := minimizeSize(env, keep, fits)
	if err != nil {
		return nil, fmt.Errorf("encrypted: %w: the envelope needs %d bytes, the notification has room for %d", err, size, maxBody-webpush.Overhead)
	}
	pad, err := webpush.BucketPad(size, maxBody)
	if err != nil {
		return nil, fmt.Errorf("encrypted: %s", reason(err))
	}
	// The envelope is serialized once, straight after the room for the
	// RFC 8188 header in the buffer the body is sealed in.
	buf := env.AppendMarshal(make([]byte, webpush.HeaderLen, webpush.EncryptedSize(size, pad)))
	if n := len(buf) - webpush.HeaderLen; n != size { // a miscount costs a copy, not a wrong body
		if pad, err = webpush.BucketPad(n, maxBody); err != nil {
			return nil, fmt.Errorf("encrypted: %s", reason(err))
		}
	}
	body, err := webpush.EncryptInPlace(keys.Keys, buf, pad)
	if err != nil {
		return nil, fmt.Errorf("encrypted: %s", reason(err))
	}
	out := []*stanza.Element{
		stanza.NewElement(stanza.NSRFC8291, "encrypted").Append(
			stanza.NewElement(stanza.NSRFC8291, "payload").WithText(encodeBase64(body))),
	}
	if jwt != nil {
		out = append(out, jwt)
	}
	return out, nil
}

// encodeBase64 is base64.StdEncoding.EncodeToString written straight into
// the string's memory (one allocation of the payload's size, not two).
func encodeBase64(b []byte) string {
	out := base64.StdEncoding.AppendEncode(make([]byte, 0, base64.StdEncoding.EncodedLen(len(b))), b)
	return unsafe.String(unsafe.SliceData(out), len(out)) // out is never written again
}

// MaxEncryptedBody returns the largest RFC 8188 body whose
// <encrypted xmlns='urn:xmpp:sce:rfc8291:0'><payload>BASE64</payload></encrypted>
// takes at most budget bytes: the wrapper is 73 bytes and standard padded
// base64 turns every 3 bytes (or part of them) into 4, so the body may take
// (budget-73)/4*3 bytes, capped at webpush.MaxBodySize (RFC 8291 §4).
func MaxEncryptedBody(budget int) int {
	avail := budget - encryptedWrapperSz
	if avail < 0 {
		return 0
	}
	return min(avail/4*3, webpush.MaxBodySize)
}

// subjectFor returns the default "sub" claim for a notification to account.
func (p *encrypted) subjectFor(account string) string {
	if p.subject != "" {
		return p.subject
	}
	if d := domainPart(account); d != "" {
		return "xmpp:" + d
	}
	return ""
}

// domainPart returns the domain of a JID string without a full JID parser:
// the resource goes first (it may contain '@'), then the localpart.
func domainPart(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.LastIndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	return j
}

// Envelope returns the plaintext tree of an encrypted notification for
// stanza st:
//
//	<envelope xmlns='urn:xmpp:sce:1'>
//	  <content>
//	    <forwarded xmlns='urn:xmpp:forward:0'>
//	      <delay xmlns='urn:xmpp:delay' stamp='now'/>
//	      <message xmlns='jabber:client' …>…</message>
//	    </forwarded>
//	  </content>
//	</envelope>
//
// The stanza is a clone (st is not modified), put in the jabber:client
// namespace if it had none or jabber:server, without the whitespace-only
// text of elements that have children (indentation). If the context names an
// archive id of the user's own archive (engine.Facts.ArchiveID) and the
// stanza carries no <stanza-id/> with it, one is added with by = the
// account. keep selects that <stanza-id/>, for minimize. XEP-0420 <rpad/> is
// left out: the RFC 8188 padding hides the length (see webpush.BucketPad).
func Envelope(st *stanza.Element, c *engine.Context, now time.Time) (env *stanza.Element, keep func(*stanza.Element) bool) {
	return envelope(st, c, now, engine.Inspect(st, c).ArchiveID)
}

// envelope is Envelope with the archive id (engine.Facts.ArchiveID) given.
func envelope(st *stanza.Element, c *engine.Context, now time.Time, archiveID string) (env *stanza.Element, keep func(*stanza.Element) bool) {
	s := st.Clone()
	if s.Name.Space == "" || s.Name.Space == stanza.NSServer {
		renameNS(s, s.Name.Space, stanza.NSClient)
	}
	dropIndentation(s)
	var sid *stanza.Element
	if id := archiveID; id != "" {
		sid = findStanzaID(s, id)
		if sid == nil {
			sid = stanza.NewElement(stanza.NSStanzaID, "stanza-id", "by", c.Account, "id", id)
			s.Append(sid)
		}
	}
	env = stanza.NewElement(stanza.NSSCE, "envelope").Append(
		stanza.NewElement(stanza.NSSCE, "content").Append(
			stanza.NewElement(stanza.NSForward, "forwarded").Append(
				stanza.NewElement(stanza.NSDelay, "delay", "stamp", now.UTC().Format(delayStampLayout)),
				s)))
	return env, func(e *stanza.Element) bool { return e != nil && e == sid }
}

// dropIndentation removes whitespace-only text from elements that have
// children: the indentation of a pretty-printed stanza, which carries no
// meaning (stanzas do not use mixed content) but would take payload bytes.
func dropIndentation(e *stanza.Element) {
	if len(e.Children) == 0 {
		return
	}
	if strings.TrimSpace(e.Text) == "" {
		e.Text = ""
	}
	for _, c := range e.Children {
		dropIndentation(c)
	}
}

// renameNS moves every element of e's tree in namespace from to namespace to.
func renameNS(e *stanza.Element, from, to string) {
	if e.Name.Space == from {
		e.Name.Space = to
	}
	for _, c := range e.Children {
		renameNS(c, from, to)
	}
}

// findStanzaID returns the <stanza-id/> with the given id among the
// children of the stanza or of the message a carbon forwards.
func findStanzaID(s *stanza.Element, id string) *stanza.Element {
	for _, ch := range s.ChildrenNamed(stanza.NSStanzaID, "stanza-id") {
		if ch.AttrValue("id") == id {
			return ch
		}
	}
	for _, wrap := range s.Children {
		if !wrap.Is(stanza.NSCarbons, "received") && !wrap.Is(stanza.NSCarbons, "sent") {
			continue
		}
		for _, inner := range wrap.Child(stanza.NSForward, "forwarded").ChildrenNamed("", "message") {
			if found := findStanzaID(inner, id); found != nil {
				return found
			}
		}
	}
	return nil
}

// errNoPayload and errBadPayload are what NotificationParts answers for
// notifications it cannot read.
var (
	errNoPayload  = errors.New("the notification has no <encrypted xmlns='" + stanza.NSRFC8291 + "'><payload/></encrypted>")
	errBadPayload = errors.New("the <payload/> is not valid base64")
)

// NotificationParts extracts the encrypted body and the JWT (token and
// base64 key, empty if absent) from a notification: a <message/> carrying
// <notification xmlns='urn:xmpp:push2:0'/>, or the <notification/> itself.
// It is the push service's (and push2 decrypt's) side of Send.
func NotificationParts(el *stanza.Element) (body []byte, token, key string, err error) {
	n := el
	if !n.Is(stanza.NSPush2, "notification") {
		n = el.Child(stanza.NSPush2, "notification")
	}
	if n == nil {
		return nil, "", "", errors.New("no <notification xmlns='" + stanza.NSPush2 + "'/> found")
	}
	payload := n.Child(stanza.NSRFC8291, "encrypted").Child(stanza.NSRFC8291, "payload")
	if payload == nil {
		return nil, "", "", errNoPayload
	}
	body, err = webpush.DecodeBase64(payload.Text)
	if err != nil {
		return nil, "", "", errBadPayload
	}
	if j := n.Child(stanza.NSPush2, "jwt"); j != nil {
		token, key = strings.TrimSpace(j.Text), j.AttrValue("key")
	}
	return body, token, key, nil
}

// Refresh implements engine.TokenRefresher: a notification whose <jwt/>
// expires within webpush.TokenRefresh (the margin the Signer's cache keeps)
// gets a token signed now, with the registration's claims, so that a
// notification sent again after waiting in the outbox is not refused by
// the relay or the push service for an expired "exp" (RFC 8292 §2). The
// new token has the same length as the old one (same key, claims and
// number of digits in "exp"), so the notification's size is unchanged.
func (p *encrypted) Refresh(_ context.Context, n *stanza.Element, provisioned any, account string, now time.Time) (bool, error) {
	keys, ok := provisioned.(*EncryptedKeys)
	j := n.Child(stanza.NSPush2, "jwt")
	if !ok || keys == nil || keys.VAPID == nil || j == nil {
		return false, nil
	}
	if exp, ok := tokenExpiry(strings.TrimSpace(j.Text)); ok && now.Add(webpush.TokenRefresh).Before(exp) {
		return false, nil
	}
	token, err := p.signer.Sign(keys.VAPID, keys.Claims, p.subjectFor(account), now)
	if err != nil {
		return false, fmt.Errorf("encrypted: %s", reason(err))
	}
	j.Text = token
	j.SetAttr("key", keys.JWTKey)
	return true, nil
}

// tokenExpiry reads a JWT's "exp" without verifying it: the token is the
// one this server signed, read back from its own outbox.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *int64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	return time.Unix(*claims.Exp, 0), true
}
