package pebblestore

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
)

func outboxSample() engine.OutboxEntry {
	at := time.Date(2026, 12, 2, 16, 4, 5, 123456789, time.UTC)
	return engine.OutboxEntry{
		ID: "n-1f3a", Account: "juliet@example.org", Reg: "phone", To: "push.example.net",
		Stanza:  `<message xmlns="jabber:client" id="n-1f3a" to="push.example.net"><notification xmlns="urn:xmpp:push2:0"><client>phone</client><envelope>AAEC&amp;&lt;x&gt;</envelope></notification></message>`,
		Created: at, Attempts: 1, Due: at,
	}
}

// TestMarshalOutboxIsEncodingJSON: the hand-written encoder writes what
// marshal (encoding/json without HTML escaping) writes, so records of both
// read the same.
func TestMarshalOutboxIsEncodingJSON(t *testing.T) {
	base := outboxSample()
	strs := []string{"", "plain", `"quoted" \ back\slash`, "<>&'", "\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f",
		"é ü 漢字 🙂", "\u2028\u2029", "bad \xff\xfe utf-8 \xc3", "\xed\xa0\x80 surrogate", strings.Repeat("x", 300)}
	var entries []engine.OutboxEntry
	for _, s := range strs {
		e := base
		e.ID, e.Account, e.Reg, e.To, e.Stanza, e.LastErr = s, s+"@a", s, s, s, s
		entries = append(entries, e)
	}
	sent := base
	sent.SentAt = base.Created.Add(3 * time.Second)
	sent.Attempts = 12
	sent.LastErr = "remote-server-timeout"
	zone := base
	zone.Created = base.Created.In(time.FixedZone("x", -5*3600-30*60))
	zone.Due = time.Time{}
	neg := base
	neg.Attempts = -3
	entries = append(entries, base, sent, zone, neg)
	for _, e := range entries {
		compareMarshal(t, e)
	}
}

func compareMarshal(t *testing.T, e engine.OutboxEntry) {
	t.Helper()
	want, werr := marshal(e)
	got, gerr := marshalOutbox(e)
	if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("marshalOutbox(%+v)\n = %s, %v\nencoding/json: %s, %v", e, got, gerr, want, werr)
	}
	if werr != nil {
		return
	}
	var back engine.OutboxEntry
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("reading %s back: %v", got, err)
	}
}

func TestMarshalOutboxOutOfRangeTimeFails(t *testing.T) {
	e := outboxSample()
	e.Due = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := marshalOutbox(e); err == nil {
		t.Fatal("an entry due in the year 10000 was encoded; encoding/json refuses it")
	}
}

func FuzzMarshalOutbox(f *testing.F) {
	f.Add("n1", "<m a=\"1\">\u2028\xff</m>", "err\n", int64(0), 3)
	f.Fuzz(func(t *testing.T, id, stanza, lastErr string, sentNanos int64, attempts int) {
		e := outboxSample()
		e.ID, e.Stanza, e.LastErr, e.Attempts = id, stanza, lastErr, attempts
		if sentNanos != 0 {
			e.SentAt = time.Unix(0, sentNanos)
		}
		compareMarshal(t, e)
	})
}

func BenchmarkMarshalOutbox(b *testing.B) {
	e := outboxSample()
	e.Stanza = strings.Repeat(e.Stanza, 4)
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			marshal(e)
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		for b.Loop() {
			marshalOutbox(e)
		}
	})
}
