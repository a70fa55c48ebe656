package profiles

import (
	"errors"
	"unicode"
	"unicode/utf8"

	"github.com/push2/push2/engine/stanza"
)

// Stanza minimization (push2.md "Send profiles", the NOTE on the 4096-byte
// limit; DESIGN.md "Delivery and state": "Minimization drops what matters
// least first and always keeps the MAM id").
//
// minimize shrinks a tree that carries one or more stanzas until a caller's
// size test passes. It works in stages, in a fixed order; after each stage
// it asks again and stops as soon as the tree fits, so a stanza loses only
// as much as it must. The order, least important first:
//
//  1. unknown     extension elements in namespaces push2 does not know
//  2. signals     content-free signals: chat states, receipt requests,
//     markers, processing hints, origin-id, caps, idle, vCard updates
//  3. formatting  XHTML-IM, XEP-0394 markup, alternative <body/>s in other
//     languages (the first body is kept)
//  4. references  XEP-0372 references, XEP-0428 fallback indications,
//     XEP-0461 replies
//  5. media       out-of-band data (XEP-0066), SIMS, stateless file sharing,
//     thumbnails, file metadata
//  6. attributes  every attribute of a stanza but from, to, type and id;
//     xml:lang everywhere
//  7. context     delays (the stanza's own and the <delay/> of the
//     forwarding wrapper), thread, nick, addresses, EME hints,
//     corrections, spoilers, occupant ids, stanza-ids assigned by others,
//     MUC status and presence details
//  8. body        the <body/> is truncated on a character boundary (never
//     inside a UTF-8 sequence, nor before a combining mark, variation
//     selector or zero-width joiner) and "…" is appended; this stage is
//     taken only if truncating alone can make the tree fit
//  9. payloads    what is left but the essentials: end-to-end encrypted
//     payloads (OMEMO, OX, PGP), call signalling, invitations, subject,
//     reactions, retractions, errors; the body is then tried whole, and
//     truncated again if needed
//
// What is never removed: the wrappers that carry a stanza (the elements
// minimize is told are structural: SCE envelope and content, XEP-0297
// forwarded, carbons), the stanza elements themselves with their from, to,
// type and id, the first <body/> of each stanza (possibly truncated), and
// every element the keep function selects (the MAM <stanza-id/> of the
// user's archive). If the tree does not fit even then, minimize returns
// errCannotMinimize.
//
// A body-less stanza whose essentials are too large (a huge subject, say)
// therefore fails rather than being delivered in a form that misrepresents
// it; the engine records the failure for that registration.

// Stage names as reported by minimize, in the order they are applied.
const (
	stageUnknown    = "unknown"
	stageSignals    = "signals"
	stageFormatting = "formatting"
	stageReferences = "references"
	stageMedia      = "media"
	stageAttributes = "attributes"
	stageContext    = "context"
	stageBody       = "body"
	stagePayloads   = "payloads"
)

// minimizeOrder lists the stages in the order minimize applies them.
var minimizeOrder = []string{
	stageUnknown, stageSignals, stageFormatting, stageReferences, stageMedia,
	stageAttributes, stageContext, stageBody, stagePayloads,
}

// errCannotMinimize is returned by minimize when even the minimal form of
// the tree does not fit.
var errCannotMinimize = errors.New("the stanza does not fit even when minimized")

// Ellipsis is appended to a truncated body.
const Ellipsis = "…"

// class is what a child of a stanza is to the minimizer: the stage that
// drops it, or one of the kinds that are never dropped.
type class int

const (
	classUnknown class = iota
	classSignals
	classFormatting
	classReferences
	classMedia
	classContext
	classPayloads
	classStructural // a wrapper to descend into
	classBody       // kept, truncated in the body stage
)

// namespaceClass classifies a child by namespace alone.
var namespaceClass = map[string]class{
	stanza.NSChatStates:  classSignals,
	stanza.NSReceipts:    classSignals,
	stanza.NSMarkers:     classSignals,
	stanza.NSHints:       classSignals,
	stanza.NSMsgEvents:   classSignals,
	stanza.NSCaps:        classSignals,
	stanza.NSIdle:        classSignals,
	stanza.NSVCardUpdate: classSignals,
	stanza.NSStyling:     classSignals,

	stanza.NSXHTMLIM: classFormatting,
	stanza.NSMarkup:  classFormatting,

	stanza.NSReference:   classReferences,
	stanza.NSFallback:    classReferences,
	stanza.NSFallbackOld: classReferences,
	stanza.NSReply:       classReferences,

	stanza.NSOOB:      classMedia,
	stanza.NSSIMS:     classMedia,
	stanza.NSSFS:      classMedia,
	stanza.NSThumbs:   classMedia,
	stanza.NSFileMeta: classMedia,

	stanza.NSDelay:      classContext,
	stanza.NSNick:       classContext,
	stanza.NSAddress:    classContext,
	stanza.NSEME:        classContext,
	stanza.NSCorrection: classContext,
	stanza.NSSpoiler:    classContext,
	stanza.NSOccupantID: classContext,
	stanza.NSMUC:        classContext,

	stanza.NSOMEMOLegacy: classPayloads,
	stanza.NSOMEMO2:      classPayloads,
	stanza.NSOX:          classPayloads,
	stanza.NSLegacyPGP:   classPayloads,
	stanza.NSJMI:         classPayloads,
	stanza.NSMUCInvite:   classPayloads,
	stanza.NSReactions:   classPayloads,
	stanza.NSRetract:     classPayloads,
	stanza.NSRetract0:    classPayloads,
	stanza.NSModerate:    classPayloads,
	stanza.NSModerate0:   classPayloads,
	stanza.NSPubSubEvent: classPayloads,
	stanza.NSAttention:   classPayloads,
	stanza.NSSCE:         classPayloads, // an SCE envelope inside a stanza is its content
}

// isStanzaNS reports whether ns is a stanza namespace (or none, for a
// stanza parsed without a declaration).
func isStanzaNS(ns string) bool {
	return ns == stanza.NSClient || ns == stanza.NSServer || ns == ""
}

func isStanza(e *stanza.Element) bool {
	if !isStanzaNS(e.Name.Space) {
		return false
	}
	switch e.Name.Local {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// classify says what child is to the minimizer, given that its parent is a
// stanza (inStanza) or a wrapper.
func classify(child *stanza.Element, inStanza bool) class {
	ns, local := child.Name.Space, child.Name.Local
	if !inStanza {
		// Inside a wrapper: the stanza it carries, the wrapper's own
		// <delay/>, or nested wrappers.
		switch {
		case isStanza(child):
			return classStructural
		case ns == stanza.NSForward && local == "forwarded", ns == stanza.NSSCE && (local == "envelope" || local == "content"):
			return classStructural
		case ns == stanza.NSDelay:
			return classContext
		}
		return classUnknown
	}
	switch {
	case isStanzaNS(ns):
		switch local {
		case "body":
			return classBody
		case "thread", "show", "status", "priority":
			return classContext
		case "subject", "error":
			return classPayloads
		}
		return classUnknown
	case ns == stanza.NSCarbons && (local == "received" || local == "sent"):
		return classStructural
	case ns == stanza.NSForward && local == "forwarded":
		return classStructural
	case ns == stanza.NSStanzaID:
		if local == "origin-id" {
			return classSignals
		}
		return classContext // a stanza-id the caller keeps is never classified
	case ns == stanza.NSMUCUser:
		if child.Child(stanza.NSMUCUser, "invite") != nil {
			return classPayloads
		}
		return classContext
	}
	if c, ok := namespaceClass[ns]; ok {
		return c
	}
	return classUnknown
}

// minimizer holds one minimize run. It measures root once and then keeps
// its size up to date with every edit it makes (size), so that fits never
// re-serializes the tree: a 3 KB stanza minimized in a dozen steps costs
// one measurement, not a dozen.
type minimizer struct {
	root   *stanza.Element
	keep   func(*stanza.Element) bool
	fitsN  func(size int) bool
	size   int         // len(root.Marshal()) as root is now
	bodies []*bodyText // the body of each stanza, in document order
}

func (m *minimizer) fits() bool { return m.fitsN(m.size) }

type bodyText struct {
	el     *stanza.Element
	full   string
	prefix stanza.TextPrefix // of full
	cur    int               // TextSize of el.Text now
}

// prefixSize is the TextSize of b.full[:k].
func (b *bodyText) prefixSize(k int) int { return b.prefix.Size(k) }

// textSize is the TextSize of truncateText(b.full, n), without building it.
func (b *bodyText) textSize(n int) int {
	if k, cut := truncateCut(b.full, n); cut {
		return b.prefixSize(k) + len(Ellipsis) // the ellipsis has nothing to escape
	}
	return b.prefixSize(len(b.full))
}

// emptyForm is how much shorter e is written as <e …/> than as
// <e …></e>: an element with neither children nor text takes the short
// form.
func emptyForm(e *stanza.Element) int { return len(e.Name.Local) + 2 }

func isEmpty(e *stanza.Element) bool { return len(e.Children) == 0 && e.Text == "" }

// removed accounts for children taken out of e (their sizes were
// subtracted already): e may have switched to the short form.
func (m *minimizer) removedFrom(e *stanza.Element, wasEmpty bool) {
	if !wasEmpty && isEmpty(e) {
		m.size -= emptyForm(e)
	}
}

// minimize removes parts of root, in place, until fits reports true, in the
// order documented above, and returns the stages it applied. root is the
// whole tree whose size matters (for the encrypted profile, the SCE
// envelope); the stanzas are found inside it by descending through the
// structural wrappers. keep selects elements that must survive (it may be
// nil); fits is asked about root's size (len(root.Marshal())) after every
// change, and in the body stage about the sizes root would have with its
// bodies cut; minimize measures root once and then counts its own edits.
//
// root must be owned by the caller (a clone), since minimize edits it. On
// errCannotMinimize root is left minimized as far as it went.
func minimize(root *stanza.Element, keep func(*stanza.Element) bool, fits func(size int) bool) ([]string, error) {
	applied, _, err := minimizeSize(root, keep, fits)
	return applied, err
}

// minimizeSize is minimize, also returning root's size when it is done.
func minimizeSize(root *stanza.Element, keep func(*stanza.Element) bool, fits func(size int) bool) ([]string, int, error) {
	m := &minimizer{root: root, keep: keep, fitsN: fits, size: root.Size()}
	applied, err := m.run()
	return applied, m.size, err
}

func (m *minimizer) run() ([]string, error) {
	root, keep := m.root, m.keep
	if m.fits() {
		return nil, nil
	}
	if keep == nil {
		m.keep = func(*stanza.Element) bool { return false }
	}
	var applied []string
	drop := func(name string, c class) bool {
		if m.drop(root, isStanza(root), c) {
			applied = append(applied, name)
		}
		return m.fits()
	}
	switch {
	case drop(stageUnknown, classUnknown),
		drop(stageSignals, classSignals),
		m.dropFormatting(&applied),
		drop(stageReferences, classReferences),
		drop(stageMedia, classMedia),
		m.dropAttributes(&applied),
		drop(stageContext, classContext):
		return applied, nil
	}
	m.collectBodies(root, isStanza(root))
	if m.truncate() {
		return append(applied, stageBody), nil
	}
	if m.drop(root, isStanza(root), classPayloads) {
		applied = append(applied, stagePayloads)
	}
	if m.fits() {
		return applied, nil
	}
	if m.truncate() {
		return append(applied, stageBody), nil
	}
	if len(m.bodies) > 0 {
		m.setBodies(0) // leave the minimal form, so that callers can report its size
		applied = append(applied, stageBody)
	}
	return applied, errCannotMinimize
}

// drop removes the children of class c below e (a stanza if inStanza) and
// reports whether it removed anything. It descends into structural
// children.
func (m *minimizer) drop(e *stanza.Element, inStanza bool, c class) bool {
	removed, wasEmpty := false, isEmpty(e)
	kept := e.Children[:0]
	for _, ch := range e.Children {
		if m.keep(ch) {
			kept = append(kept, ch)
			continue
		}
		switch cl := classify(ch, inStanza); cl {
		case classStructural:
			if m.drop(ch, isStanza(ch), c) {
				removed = true
			}
		case c:
			removed = true
			m.size -= ch.SizeIn(e.Name.Space)
			continue
		}
		kept = append(kept, ch)
	}
	clear(e.Children[len(kept):])
	e.Children = kept
	m.removedFrom(e, wasEmpty)
	return removed
}

// dropFormatting is the formatting stage: formatting elements, and every
// <body/> of a stanza but its first.
func (m *minimizer) dropFormatting(applied *[]string) bool {
	removed := m.drop(m.root, isStanza(m.root), classFormatting)
	if m.dropExtraBodies(m.root, isStanza(m.root)) {
		removed = true
	}
	if removed {
		*applied = append(*applied, stageFormatting)
	}
	return m.fits()
}

func (m *minimizer) dropExtraBodies(e *stanza.Element, inStanza bool) bool {
	removed, seen, wasEmpty := false, false, isEmpty(e)
	kept := e.Children[:0]
	for _, ch := range e.Children {
		switch classify(ch, inStanza) {
		case classStructural:
			if m.dropExtraBodies(ch, isStanza(ch)) {
				removed = true
			}
		case classBody:
			if seen && !m.keep(ch) {
				removed = true
				m.size -= ch.SizeIn(e.Name.Space)
				continue
			}
			seen = true
		}
		kept = append(kept, ch)
	}
	clear(e.Children[len(kept):])
	e.Children = kept
	m.removedFrom(e, wasEmpty)
	return removed
}

// dropAttributes is the attributes stage.
func (m *minimizer) dropAttributes(applied *[]string) bool {
	if m.stripAttrs(m.root, "\x00", isStanza(m.root)) {
		*applied = append(*applied, stageAttributes)
	}
	return m.fits()
}

// stripAttrs removes the non-essential attributes of e (a stanza if
// isSt) and of the children that survive the earlier stages.
func (m *minimizer) stripAttrs(e *stanza.Element, parentNS string, isSt bool) bool {
	removed := false
	if !m.keep(e) && len(e.Attr) > 0 {
		// The start tag is measured before and after (an attribute in a
		// foreign namespace is written with a prefix numbered by its
		// position, so the change is not the removed attributes' length).
		before := openTagSize(e, parentNS)
		defer func() { m.size += openTagSize(e, parentNS) - before }()
		kept := e.Attr[:0]
		for _, a := range e.Attr {
			essential := a.Name.Space != stanza.NSXML
			if isSt {
				essential = a.Name.Space == "" && (a.Name.Local == "from" || a.Name.Local == "to" || a.Name.Local == "type" || a.Name.Local == "id")
			}
			if essential {
				kept = append(kept, a)
			} else {
				removed = true
			}
		}
		e.Attr = kept
	}
	for _, ch := range e.Children {
		if m.stripAttrs(ch, e.Name.Space, isStanza(ch)) {
			removed = true
		}
	}
	return removed
}

// openTagSize is the size of e's name, namespace declaration and
// attributes as written below an element in parentNS.
func openTagSize(e *stanza.Element, parentNS string) int {
	return (&stanza.Element{Name: e.Name, Attr: e.Attr}).SizeIn(parentNS)
}

// collectBodies records the first body of every stanza below e.
func (m *minimizer) collectBodies(e *stanza.Element, inStanza bool) {
	seen := false
	for _, ch := range e.Children {
		switch classify(ch, inStanza) {
		case classStructural:
			m.collectBodies(ch, isStanza(ch))
		case classBody:
			if !seen {
				b := &bodyText{el: ch, full: ch.Text}
				b.prefix = stanza.NewTextPrefix(ch.Text)
				b.cur = b.prefixSize(len(ch.Text))
				m.bodies = append(m.bodies, b)
				seen = true
			}
		}
	}
}

// truncate finds the largest n such that cutting every body to at most n
// bytes (plus the ellipsis) fits, applies it and reports true; if not even
// n = 0 fits, it leaves the bodies whole and reports false. Sizes grow
// monotonically with n, so a binary search finds n; each step computes the
// size from the bodies' prefix sizes, without cutting or measuring.
func (m *minimizer) truncate() bool {
	longest := 0
	for _, b := range m.bodies {
		longest = max(longest, len(b.full))
	}
	if longest == 0 {
		return false
	}
	fitsAt := func(n int) bool {
		size := m.size
		for _, b := range m.bodies {
			size += b.textSize(n) - b.cur
		}
		return m.fitsN(size)
	}
	if !fitsAt(0) {
		return false
	}
	lo, hi := 0, longest // invariant: lo fits; hi (the whole bodies) did not, the caller checked
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		if fitsAt(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	m.setBodies(lo)
	return true
}

// setBodies cuts every body to at most n bytes plus the ellipsis.
func (m *minimizer) setBodies(n int) {
	for _, b := range m.bodies {
		b.el.Text = truncateText(b.full, n)
		size := b.textSize(n)
		m.size += size - b.cur
		b.cur = size
	}
}

// truncateText returns s unchanged if it is at most n bytes long; otherwise
// the longest prefix of at most n bytes that ends on a character boundary,
// followed by Ellipsis. The cut never splits a UTF-8 sequence, and it backs
// off so as not to separate a character from the combining marks, variation
// selectors, emoji modifiers or zero-width joiners that follow it; trailing
// whitespace before the ellipsis is removed. The result is valid UTF-8 if s
// is.
func truncateText(s string, n int) string {
	if k, cut := truncateCut(s, n); cut {
		return s[:k] + Ellipsis
	}
	return s
}

// truncateCut is truncateText's cut: the length of the prefix kept, and
// whether s is cut at all (false: s is kept whole, without the ellipsis).
func truncateCut(s string, n int) (int, bool) {
	if len(s) <= n {
		return len(s), false
	}
	if n < 0 {
		n = 0
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	// Back off while the first dropped rune extends the last kept one, or
	// the last kept rune is a joiner.
	for cut > 0 {
		next, _ := utf8.DecodeRuneInString(s[cut:])
		last, size := utf8.DecodeLastRuneInString(s[:cut])
		if !extendsPrevious(next) && last != zwj {
			break
		}
		cut -= size
	}
	prefix := s[:cut]
	for len(prefix) > 0 {
		r, size := utf8.DecodeLastRuneInString(prefix)
		if !unicode.IsSpace(r) {
			break
		}
		prefix = prefix[:len(prefix)-size]
	}
	return len(prefix), true
}

const zwj = '\u200d'

// extendsPrevious reports whether r belongs to the grapheme of the rune
// before it: combining marks, variation selectors, emoji modifiers, the
// zero-width joiner and emoji tag characters.
func extendsPrevious(r rune) bool {
	switch {
	case r == zwj, r == '\u200c':
		return true
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF: // variation selectors
		return true
	case r >= 0x1F3FB && r <= 0x1F3FF: // emoji skin tone modifiers
		return true
	case r >= 0xE0020 && r <= 0xE007F: // emoji tag sequences
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc)
}
