package host

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/host/internal/abi"

	"github.com/tetratelabs/wazero/api"

	"github.com/push2/push2/engine"
)

// hostFunc is one function of the push2 import module (sdk/ABI.md §5–§9).
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      api.GoModuleFunc
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func ret(stack []uint64, v int32) { stack[0] = api.EncodeI32(v) }

func arg(stack []uint64, i int) uint32 { return api.DecodeU32(stack[i]) }

// readMem returns a view of guest memory; ok is false for a range outside
// memory or larger than MaxArgumentBytes. The view is valid until the guest
// runs again; host functions never keep it.
func readMem(mod api.Module, ptr, n uint32) ([]byte, bool) {
	if n > abi.MaxArgumentBytes {
		return nil, false
	}
	if n == 0 {
		return nil, true
	}
	return mod.Memory().Read(ptr, n)
}

// writeOut implements the guest-owned buffer rule of sdk/ABI.md §4
// "Memory ownership": it writes data to [ptr, ptr+cap) if it fits and
// returns its length either way; a guest that gets a size above cap retries
// with a bigger buffer. Nothing is written when it does not fit.
func writeOut(mod api.Module, ptr, capacity uint32, data []byte) int32 {
	if uint64(len(data)) > uint64(capacity) {
		return int32(min(len(data), 1<<31-1))
	}
	if len(data) > 0 && !mod.Memory().Write(ptr, data) {
		return abi.StatusInvalid
	}
	return int32(len(data))
}

func writeString(mod api.Module, ptr, capacity uint32, s string) int32 {
	if uint64(len(s)) > uint64(capacity) {
		return int32(min(len(s), 1<<31-1))
	}
	if len(s) > 0 && !mod.Memory().WriteString(ptr, s) {
		return abi.StatusInvalid
	}
	return int32(len(s))
}

// hostFuncs returns the push2 import module of ABI v1.
func (h *Host) hostFuncs() []hostFunc {
	return []hostFunc{
		{"abi_v1", nil, []api.ValueType{i32}, func(_ context.Context, _ api.Module, stack []uint64) {
			ret(stack, abi.Revision)
		}},
		{"output", []api.ValueType{i32, i32}, []api.ValueType{i32}, h.fnOutput},
		{"set_reason", []api.ValueType{i32, i32}, []api.ValueType{i32}, h.fnSetReason},
		{"el_find", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnElFind},
		{"el_child", []api.ValueType{i32, i32}, []api.ValueType{i32}, h.fnElChild},
		{"el_name", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnElString(func(e *stanza.Element) string { return e.Name.Local })},
		{"el_ns", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnElString(func(e *stanza.Element) string { return e.Name.Space })},
		{"el_text", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnElString(func(e *stanza.Element) string { return e.Text })},
		{"el_attr", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, h.fnElAttr},
		{"el_xml", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnElXML},
		{"fact", []api.ValueType{i32}, []api.ValueType{i32}, h.fnFact},
		{"field", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnField},
		{"facts", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnFacts},
		{"fields", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnFields},
		{"now_ms", nil, []api.ValueType{i64}, h.fnNow},
		{"log", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, h.fnLog},
		{"webpush_encrypt", []api.ValueType{i32, i32, i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}, h.fnEncrypt},
		{"jwt_sign", []api.ValueType{i32, i32, i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}, h.fnJWT},
		{"base64_encode", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, h.fnB64Encode},
		{"base64_decode", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, h.fnB64Decode},
	}
}

func (h *Host) fnOutput(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil || (c.kind != kindDescribe && c.kind != kindSend) {
		ret(stack, abi.StatusUnavailable)
		return
	}
	ptr, n := arg(stack, 0), arg(stack, 1)
	limit := h.cfg.MaxOutputBytes
	if c.kind == kindDescribe {
		limit = abi.MaxDescribeBytes
	}
	if c.overflow || uint64(len(c.out))+uint64(n) > uint64(limit) {
		c.overflow = true // the call fails even if the guest ignores this
		ret(stack, abi.StatusTooLarge)
		return
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	c.out = append(c.out, b...)
	ret(stack, abi.StatusOK)
}

func (h *Host) fnSetReason(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil || c.kind == kindInit || c.kind == kindDescribe {
		ret(stack, abi.StatusUnavailable)
		return
	}
	ptr, n := arg(stack, 0), arg(stack, 1)
	b, ok := mod.Memory().Read(ptr, min(n, abi.MaxReasonBytes+utf8.UTFMax))
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	if len(b) <= abi.MaxReasonBytes && string(b) == c.prevReason {
		c.reason = c.prevReason // the same constant reason as last time: no copy
	} else {
		c.reason = cleanText(b, abi.MaxReasonBytes)
	}
	c.hasReply = true
	ret(stack, abi.StatusOK)
}

// unsafeString is b as a string without a copy, for a host function that
// drops it before returning (guest memory is only stable until then).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// cleanText cuts b to at most limit bytes at a rune boundary and replaces
// invalid UTF-8 and control characters, so guest text is safe in logs and
// in stanza error texts.
func cleanText(b []byte, limit int) string {
	if len(b) <= limit && printableASCII(b) {
		return string(b)
	}
	if len(b) > limit {
		b = b[:limit]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// printableASCII reports whether b is tabs and printable ASCII only, the
// text cleanText leaves as it is.
func printableASCII(b []byte) bool {
	for _, ch := range b {
		if (ch < 0x20 && ch != '\t') || ch >= 0x7f {
			return false
		}
	}
	return true
}

func (h *Host) fnElFind(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	e := c.element(api.DecodeI32(stack[0]))
	if e == nil {
		ret(stack, abi.StatusInvalid)
		return
	}
	p, ok := readMem(mod, arg(stack, 1), arg(stack, 2))
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	// The path is parsed from guest memory in place: the steps are used and
	// dropped before the guest runs again, and the view is valid until then.
	steps, err := appendPath(c.steps[:0], unsafeString(p))
	if err != nil {
		ret(stack, abi.StatusInvalid)
		return
	}
	ret(stack, c.handle(findPath(e, steps)))
}

func (h *Host) fnElChild(ctx context.Context, _ api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	e := c.element(api.DecodeI32(stack[0]))
	i := api.DecodeI32(stack[1])
	switch {
	case e == nil || i < 0:
		ret(stack, abi.StatusInvalid)
	case int(i) >= len(e.Children):
		ret(stack, abi.StatusNotFound)
	default:
		ret(stack, c.handle(e.Children[i]))
	}
}

func (h *Host) fnElString(get func(*stanza.Element) string) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		c := callFrom(ctx)
		if c == nil {
			ret(stack, abi.StatusUnavailable)
			return
		}
		e := c.element(api.DecodeI32(stack[0]))
		if e == nil {
			ret(stack, abi.StatusInvalid)
			return
		}
		ret(stack, writeString(mod, arg(stack, 1), arg(stack, 2), get(e)))
	}
}

func (h *Host) fnElAttr(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	e := c.element(api.DecodeI32(stack[0]))
	name, ok := readMem(mod, arg(stack, 1), arg(stack, 2))
	if e == nil || !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	ns, local := "", string(name)
	if len(local) > 0 && local[0] == '{' {
		end := strings.IndexByte(local, '}')
		if end < 0 {
			ret(stack, abi.StatusInvalid)
			return
		}
		ns, local = local[1:end], local[end+1:]
	}
	for _, a := range e.Attr {
		if a.Name.Space == ns && a.Name.Local == local {
			ret(stack, writeString(mod, arg(stack, 3), arg(stack, 4), a.Value))
			return
		}
	}
	ret(stack, abi.StatusNotFound)
}

func (h *Host) fnElXML(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	e := c.element(api.DecodeI32(stack[0]))
	if e == nil {
		ret(stack, abi.StatusInvalid)
		return
	}
	if c.xmlEl != e {
		c.xmlEl, c.xmlOut = e, c.m.marshal(e, c.isRegistration(e))
	}
	ret(stack, writeOut(mod, arg(stack, 1), arg(stack, 2), c.xmlOut))
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func (h *Host) fnFact(ctx context.Context, _ api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	ret(stack, c.fact(api.DecodeI32(stack[0])))
}

// fnFacts is push2.facts(first, n, buf): the values of facts first …
// first+n-1, as push2.fact returns them, as n little-endian i32 at buf
// (sdk/ABI.md §7 "Batched reads").
func (h *Host) fnFacts(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	first, n := api.DecodeI32(stack[0]), api.DecodeI32(stack[1])
	if n < 0 || n > abi.MaxFactBatch {
		ret(stack, abi.StatusInvalid)
		return
	}
	out, ok := mod.Memory().Read(arg(stack, 2), uint32(n)*4)
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	for i := range n {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(c.fact(first+i)))
	}
	ret(stack, abi.StatusOK)
}

// fact is the value of fact id in this call, or a status.
func (c *call) fact(id int32) int32 {
	switch id {
	case abi.FactDecisionPriority, abi.FactDecisionVoIP, abi.FactBudget:
		if c.kind != kindSend {
			return abi.StatusUnavailable
		}
		switch id {
		case abi.FactDecisionPriority:
			p := c.decision.Priority
			if p == 0 {
				p = engine.PriorityNormal
			}
			return int32(p)
		case abi.FactDecisionVoIP:
			return b2i(c.decision.VoIP)
		default:
			return int32(min(c.budget, 1<<31-1))
		}
	case abi.FactTrigger:
		if c.ectx == nil {
			return abi.StatusUnavailable
		}
		return triggerNumber(c.ectx.Trigger)
	}
	f := c.getFacts()
	if f == nil {
		if id >= abi.FactKind && id <= abi.FactSuggestedPriority {
			return abi.StatusUnavailable
		}
		return abi.StatusInvalid
	}
	var v int32
	switch id {
	case abi.FactKind:
		switch f.Kind {
		case "message":
			v = 1
		case "presence":
			v = 2
		case "iq":
			v = 3
		}
	case abi.FactHasBody:
		v = b2i(f.HasBody)
	case abi.FactEncrypted:
		v = b2i(f.Encrypted)
	case abi.FactCall:
		switch f.Call {
		case engine.CallPropose:
			v = 1
		case engine.CallRetract:
			v = 2
		case engine.CallOther:
			v = 3
		}
	case abi.FactChatState:
		v = b2i(f.ChatState)
	case abi.FactReceipt:
		v = b2i(f.Receipt)
	case abi.FactCorrection:
		v = b2i(f.Correction)
	case abi.FactSentCarbon:
		v = b2i(f.SentCarbon)
	case abi.FactHeadline:
		v = b2i(f.Headline)
	case abi.FactError:
		v = b2i(f.Error)
	case abi.FactReflection:
		v = b2i(f.Reflection)
	case abi.FactGroupchat:
		v = b2i(f.Groupchat)
	case abi.FactInvite:
		v = b2i(f.Invite)
	case abi.FactMention:
		v = b2i(f.Mention)
	case abi.FactReply:
		v = b2i(f.Reply)
	case abi.FactContentOnly:
		v = b2i(f.ContentOnly)
	case abi.FactImportant:
		v = b2i(f.Important())
	case abi.FactSuggestedPriority:
		v = int32(f.Priority())
	default:
		v = abi.StatusInvalid
	}
	return v
}

func triggerNumber(t engine.Trigger) int32 {
	switch t {
	case engine.TriggerOffline:
		return 1
	case engine.TriggerHibernated:
		return 2
	case engine.TriggerAckDelayed:
		return 3
	case engine.TriggerArchived:
		return 4
	case engine.TriggerGroupchat:
		return 5
	}
	return 0
}

func (h *Host) fnField(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	s, st := c.field(api.DecodeI32(stack[0]))
	if st != abi.StatusOK {
		ret(stack, st)
		return
	}
	ret(stack, writeString(mod, arg(stack, 1), arg(stack, 2), s))
}

// fnFields is push2.fields(mask, buf, cap): for every field id whose bit
// (1 << id) is set, in ascending order, a little-endian i32 that is the
// value's length or a status, then the value's bytes (sdk/ABI.md §7
// "Batched reads"). The size rule of §4 applies to the whole record.
func (h *Host) fnFields(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	mask := arg(stack, 0)
	if mask&1 != 0 {
		ret(stack, abi.StatusInvalid) // there is no field 0
		return
	}
	var vals [32]string
	var sts [32]int32
	size := 0
	for id := int32(1); id < 32; id++ {
		if mask&(1<<id) == 0 {
			continue
		}
		vals[id], sts[id] = c.field(id)
		size += 4 + len(vals[id])
	}
	if size > 1<<31-1 {
		ret(stack, abi.StatusTooLarge)
		return
	}
	if uint64(size) > uint64(arg(stack, 2)) {
		ret(stack, int32(size))
		return
	}
	out, ok := mod.Memory().Read(arg(stack, 1), uint32(size))
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	at := 0
	for id := int32(1); id < 32; id++ {
		if mask&(1<<id) == 0 {
			continue
		}
		if sts[id] != abi.StatusOK {
			binary.LittleEndian.PutUint32(out[at:], uint32(sts[id]))
			at += 4
			continue
		}
		binary.LittleEndian.PutUint32(out[at:], uint32(len(vals[id])))
		at += 4 + copy(out[at+4:], vals[id])
	}
	ret(stack, int32(size))
}

// field is the value of field id in this call, or a status.
func (c *call) field(id int32) (string, int32) {
	var s string
	switch id {
	case abi.FieldProfile:
		s = c.profile
	case abi.FieldAccount, abi.FieldTrigger, abi.FieldNick, abi.FieldArchiveBy:
		if c.ectx == nil {
			return "", abi.StatusUnavailable
		}
		switch id {
		case abi.FieldAccount:
			s = c.ectx.Account
		case abi.FieldTrigger:
			s = string(c.ectx.Trigger)
		case abi.FieldNick:
			s = c.ectx.Nick
		default:
			s = c.ectx.ArchiveBy
		}
	case abi.FieldArchiveID, abi.FieldFrom, abi.FieldChat, abi.FieldBody, abi.FieldType:
		f := c.getFacts()
		if f == nil {
			return "", abi.StatusUnavailable
		}
		switch id {
		case abi.FieldArchiveID:
			s = f.ArchiveID
		case abi.FieldFrom:
			s = f.From.String()
		case abi.FieldChat:
			s = f.Chat
		case abi.FieldBody:
			s = f.Body
		default:
			s = f.Type
		}
	default:
		return "", abi.StatusInvalid
	}
	return s, abi.StatusOK
}

func (h *Host) fnNow(ctx context.Context, _ api.Module, stack []uint64) {
	if c := callFrom(ctx); c != nil && c.ectx != nil && !c.ectx.Now.IsZero() {
		stack[0] = uint64(c.ectx.Now.UnixMilli())
		return
	}
	stack[0] = uint64(h.cfg.Clock().UnixMilli())
}

func (h *Host) fnLog(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		ret(stack, abi.StatusUnavailable)
		return
	}
	level := api.DecodeI32(stack[0])
	ptr, n := arg(stack, 1), arg(stack, 2)
	b, ok := mod.Memory().Read(ptr, min(n, abi.MaxLogBytes+utf8.UTFMax))
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	if !c.m.guestLog(guestLevel(level), cleanText(b, abi.MaxLogBytes), "source", "push2.log", "call", c.kind.String(), "profile", c.profile) {
		ret(stack, abi.StatusRateLimited)
		return
	}
	ret(stack, abi.StatusOK)
}

func (h *Host) cryptoCall(ctx context.Context) (*call, Crypto, int32) {
	c := callFrom(ctx)
	if c == nil || (c.kind != kindSend && c.kind != kindPrepare) || h.cfg.Crypto == nil {
		return nil, nil, abi.StatusUnavailable
	}
	return c, h.cfg.Crypto, abi.StatusOK
}

func (h *Host) fnEncrypt(ctx context.Context, mod api.Module, stack []uint64) {
	c, cr, st := h.cryptoCall(ctx)
	if st != abi.StatusOK {
		ret(stack, st)
		return
	}
	ua, ok1 := readMem(mod, arg(stack, 0), arg(stack, 1))
	auth, ok2 := readMem(mod, arg(stack, 2), arg(stack, 3))
	pt, ok3 := mod.Memory().Read(arg(stack, 4), arg(stack, 5))
	if !ok1 || !ok2 || !ok3 || len(pt) > h.cfg.MaxOutputBytes {
		ret(stack, abi.StatusInvalid)
		return
	}
	body, err := cr.Encrypt(append([]byte(nil), ua...), append([]byte(nil), auth...), append([]byte(nil), pt...))
	if err != nil {
		c.m.logger.Debug("push2.webpush_encrypt failed", "profile", c.profile, "err", err)
		ret(stack, abi.StatusFailed)
		return
	}
	ret(stack, writeOut(mod, arg(stack, 6), arg(stack, 7), body))
}

func (h *Host) fnJWT(ctx context.Context, mod api.Module, stack []uint64) {
	c, cr, st := h.cryptoCall(ctx)
	if st != abi.StatusOK {
		ret(stack, st)
		return
	}
	alg, ok1 := readMem(mod, arg(stack, 0), arg(stack, 1))
	key, ok2 := readMem(mod, arg(stack, 2), arg(stack, 3))
	cl, ok3 := readMem(mod, arg(stack, 4), arg(stack, 5))
	if !ok1 || !ok2 || !ok3 {
		ret(stack, abi.StatusInvalid)
		return
	}
	claims := map[string]string{}
	if len(cl) > 0 {
		if err := json.Unmarshal(cl, &claims); err != nil {
			ret(stack, abi.StatusInvalid)
			return
		}
	}
	token, pub, err := cr.SignJWT(string(alg), string(key), claims)
	if err != nil {
		c.m.logger.Debug("push2.jwt_sign failed", "profile", c.profile, "err", err)
		ret(stack, abi.StatusFailed)
		return
	}
	ret(stack, writeString(mod, arg(stack, 6), arg(stack, 7), token+" "+base64.RawURLEncoding.EncodeToString(pub)))
}

func (h *Host) fnB64Encode(ctx context.Context, mod api.Module, stack []uint64) {
	var enc *base64.Encoding
	switch api.DecodeI32(stack[0]) {
	case abi.Base64Std:
		enc = base64.StdEncoding
	case abi.Base64RawURL:
		enc = base64.RawURLEncoding
	default:
		ret(stack, abi.StatusInvalid)
		return
	}
	in, ok := mod.Memory().Read(arg(stack, 1), arg(stack, 2))
	if !ok || len(in) > h.cfg.MaxOutputBytes {
		ret(stack, abi.StatusInvalid)
		return
	}
	n := enc.EncodedLen(len(in))
	if uint64(n) > uint64(arg(stack, 4)) {
		ret(stack, int32(n))
		return
	}
	out, ok := mod.Memory().Read(arg(stack, 3), uint32(n))
	if !ok {
		ret(stack, abi.StatusInvalid)
		return
	}
	if n > 0 {
		// Input and output may overlap in guest memory: encode from a copy.
		enc.Encode(out, append([]byte(nil), in...))
	}
	ret(stack, int32(n))
}

func (h *Host) fnB64Decode(ctx context.Context, mod api.Module, stack []uint64) {
	in, ok := mod.Memory().Read(arg(stack, 0), arg(stack, 1))
	if !ok || len(in) > h.cfg.MaxOutputBytes {
		ret(stack, abi.StatusInvalid)
		return
	}
	out, err := decodeAnyBase64(string(in))
	if err != nil {
		ret(stack, abi.StatusInvalid)
		return
	}
	ret(stack, writeOut(mod, arg(stack, 2), arg(stack, 3), out))
}

// decodeAnyBase64 accepts the four forms keys come in (standard or URL
// alphabet, padded or not), ignoring surrounding whitespace, as <send/>
// elements written by different clients do.
func decodeAnyBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
