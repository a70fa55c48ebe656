package bridgeproto

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// declare plays the bridge's answer to <features/>.
func (h *harness) declare(t *testing.T, attrs ...string) {
	t.Helper()
	el := stanza.NewElement(NS, KindBridge, append([]string{"routed", "true"}, attrs...)...)
	if out := h.do(Message(domain, component, el)); len(out) != 0 && len(attrs) > 0 && attrs[1] != "3" {
		t.Fatalf("declaration answered %v", out)
	}
}

// sendEvents hands n events (ids E0…) to the service, one message each, as
// fast as it takes them, and returns every message sent meanwhile.
func (h *harness) sendEvents(t *testing.T, n int) []*stanza.Element {
	t.Helper()
	for i := range n {
		ev := &Event{ID: fmt.Sprintf("E%d", i), Account: account, Trigger: engine.TriggerOffline,
			Stanza: stanza.MustParse(strings.Replace(chatXML, `id="m1"`, fmt.Sprintf(`id="m%d"`, i), 1))}
		h.svc.Handle(wireCopy(Message(domain, component, ev.Element())))
	}
	h.svc.Wait()
	return h.wire.take()
}

// ackIDs returns the acks each message carries; it fails on anything else.
func ackIDs(t *testing.T, out []*stanza.Element) (perMessage []int, ids map[string]int) {
	t.Helper()
	ids = map[string]int{}
	for _, m := range out {
		if m.AttrValue("from") != component || m.AttrValue("to") != domain {
			t.Fatalf("message %s", m)
		}
		n := 0
		for _, c := range m.Children {
			a, err := ParseAck(c)
			if err != nil || a.Error != "" {
				t.Fatalf("not an ack: %s (%v)", c, err)
			}
			ids[a.ID]++
			n++
		}
		perMessage = append(perMessage, n)
	}
	return perMessage, ids
}

// TestAcksBatched: a bridge that declared version 2 gets its acks in
// batches of at most 64, every event acked exactly once, and the batches
// go out on their own within the flush delay (Wait returns once they
// have). 200 events with no registration are done in far less than 10 ms
// each, so one ack per message (version 1's way) fails this test.
func TestAcksBatched(t *testing.T) {
	h := newHarness(t)
	h.svc.Connected()
	h.declare(t, "version", "2")
	if !h.svc.batchesAcks(domain) || h.svc.batchesAcks("example.net") {
		t.Fatal("version 2 not recorded for the declaring domain only")
	}
	const n = 200
	per, ids := ackIDs(t, h.sendEvents(t, n))
	if len(ids) != n {
		t.Fatalf("%d events acked, want %d", len(ids), n)
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("%s acked %d times", id, c)
		}
	}
	for _, c := range per {
		if c > MaxAcksPerMessage {
			t.Errorf("a message with %d acks (max %d)", c, MaxAcksPerMessage)
		}
	}
	if len(per) > n/4 {
		t.Errorf("%d ack messages for %d events (%v): acks not batched", len(per), n, per)
	}
	// One more event: its ack comes alone, by the timer, within the delay
	// (with slack for a loaded machine).
	begin := time.Now()
	per, _ = ackIDs(t, h.sendEvents(t, 1))
	if len(per) != 1 || per[0] != 1 {
		t.Errorf("single event: acks %v", per)
	}
	if d := time.Since(begin); d > AckFlushDelay+500*time.Millisecond {
		t.Errorf("single ack took %v", d)
	}
}

// TestAcksOnePerMessageForVersion1: a bridge that declares no version (a
// version 1 bridge), or none at all, gets one ack per message, at once.
func TestAcksOnePerMessageForVersion1(t *testing.T) {
	for name, attrs := range map[string][]string{"no declaration": nil, "no version": {}, "version 1": {"version", "1"}} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.svc.Connected()
			if attrs != nil {
				h.declare(t, attrs...)
			}
			per, ids := ackIDs(t, h.sendEvents(t, 20))
			if len(ids) != 20 || len(per) != 20 {
				t.Errorf("%d acks in %d messages, want 20 in 20", len(ids), len(per))
			}
		})
	}
}

// TestUnknownVersionRefused: a bridge declaring a version push2d does not
// speak gets an error naming the versions push2d speaks, push2d logs it,
// and the bridge is served as version 1 (one ack per message).
func TestUnknownVersionRefused(t *testing.T) {
	for _, v := range []string{"3", "two"} {
		t.Run(v, func(t *testing.T) {
			var log lockedLog
			h := newHarnessWith(t, func(c *Config) { c.Logger = testLogger(&log) })
			h.svc.Connected()
			out := h.do(Message(domain, component, stanza.NewElement(NS, KindBridge, "routed", "true", "version", v)))
			if len(out) != 1 || out[0].AttrValue("type") != "error" || out[0].AttrValue("to") != domain {
				t.Fatalf("answer %v", out)
			}
			e := out[0].Child(stanza.NSClient, "error")
			if e == nil || e.Child(stanza.NSStanzaError, "feature-not-implemented") == nil ||
				!strings.Contains(e.ChildText(stanza.NSStanzaError, "text"), "(1 2)") {
				t.Errorf("error %s", out[0])
			}
			if !strings.Contains(log.String(), "does not speak") || !strings.Contains(log.String(), "declared="+v) {
				t.Errorf("log: %s", log.String())
			}
			if h.svc.batchesAcks(domain) {
				t.Error("refused version batches acks")
			}
			if per, _ := ackIDs(t, h.sendEvents(t, 5)); len(per) != 5 {
				t.Errorf("acks %v, want one per message", per)
			}
		})
	}
}

// TestFeaturesVersions: <features/> lists the versions push2d speaks; one
// without the attribute (an older push2d) reads as version 1 only when
// asked through parseVersions.
func TestFeaturesVersions(t *testing.T) {
	h := newHarness(t)
	f, err := ParseFeatures(wireCopy(h.svc.features().Element()))
	if err != nil || fmt.Sprint(f.Versions) != "[1 2]" {
		t.Errorf("versions %v (%v)", f.Versions, err)
	}
	if v := parseVersions(""); fmt.Sprint(v) != "[1]" {
		t.Errorf("no attribute: %v", v)
	}
}

// lockedLog collects log output from several goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(l *lockedLog) *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }
