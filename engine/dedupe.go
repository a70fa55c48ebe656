package engine

import (
	"cmp"
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"slices"
	"time"

	"github.com/push2/push2/engine/stanza"
)

// A registration gets at most one push per stanza, whatever the number of
// triggers that report it (offline storage, hibernation, archive, MUC):
// the store records a mark per dedupe key atomically with the outbox entry,
// and a stanza whose key is already marked for the registration is a
// duplicate. Marks are kept for Config.DedupeRetention.

// dedupeKeys names a stanza in every way a trigger may know it: the user's
// archive id (when this trigger knows it) and the stanza's identity: who
// sent it, its id attribute and a hash of its content without what servers
// add on the way (<stanza-id/>, <delay/>). Two reports of one stanza share
// at least the identity key. The content is part of the identity because
// ids are only unique if the sender makes them so: a client that counts
// from 1 again after a restart must not lose its messages' pushes.
func dedupeKeys(st *stanza.Element, f *Facts) []string {
	var keys []string
	if f.ArchiveID != "" {
		keys = append(keys, "a:"+f.ArchiveID)
	}
	h := sha256.New()
	stripped := f.Message.Clone()
	kept := stripped.Children[:0]
	for _, ch := range stripped.Children {
		if ch.Is(stanza.NSStanzaID, "stanza-id") || ch.Is(stanza.NSDelay, "delay") {
			continue // added by the server on the way; not part of identity
		}
		kept = append(kept, ch)
	}
	stripped.Children = kept
	sortAttrs(stripped)
	h.Write(stripped.Marshal())
	keys = append(keys, fmt.Sprintf("s:%x", h.Sum(nil)[:16]))
	return keys
}

// enqueueOnce records the push under the dedupe keys and, if it is the
// registration's first for this stanza, hands it to the outbox. The entry
// and the marks are one store write, so a crash cannot leave a mark
// without its push (a lost push) or a push without its mark (a duplicate).
func (e *Engine) enqueueOnce(r *Registration, n *Notification, keys []string, now time.Time) (OutcomeCode, string) {
	entry := OutboxEntry{ID: n.ID, Account: r.Account, Reg: r.ID, To: n.To, Stanza: string(n.Stanza.Marshal()), Created: now, Due: now}
	first, err := e.store.RecordPush(r.Key(), keys, now, entry)
	if err != nil {
		e.cfg.Logger.Error("record push", "account", r.Account, "id", r.ID, "err", err)
		return OutcomeStoreError, "store error"
	}
	if !first {
		return OutcomeDuplicate, "duplicate: this registration already got a push for this stanza"
	}
	e.outbox.add(entry)
	return OutcomePushed, ""
}

// sortAttrs puts the attributes of el and its descendants (a copy) in one
// order: XML gives attributes none, and a server may serialize one stanza
// with its attributes in another order each time (Prosody writes a Lua
// table's, which differs between the stanza it handled and the one it
// read back from offline storage), which must not make it another stanza.
func sortAttrs(el *stanza.Element) {
	slices.SortFunc(el.Attr, func(a, b xml.Attr) int {
		return cmp.Or(cmp.Compare(a.Name.Space, b.Name.Space), cmp.Compare(a.Name.Local, b.Name.Local))
	})
	for _, c := range el.Children {
		sortAttrs(c)
	}
}
