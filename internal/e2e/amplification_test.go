package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/hostile"
	"github.com/push2/push2/internal/stack"
)

// TestEnableAmplification replays issue 11's CPU amplification through
// Prosody, the bridge and push2d: five devices of one account enable with
// 205 KB of children in another namespace each, which push2d used to store
// verbatim and parse again on every reload. The enables succeed and each
// registration is stored in well under 1 KB (the admin interface's
// stored_bytes). Each device then enables again with 205 KB of a profile's
// children inside <match/>, which cannot be dropped: policy-violation with
// a text, and the registration stays as it was. A message to the offline
// account still gets its five pushes.
func TestEnableAmplification(t *testing.T) { eachServer(t, testEnableAmplification) }

func testEnableAmplification(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)

	const junkBytes = 205 << 10
	foreign := hostile.Children("urn:example:junk", junkBytes)
	inMatch := hostile.Children("urn:example:profile", junkBytes)
	for i := range 5 {
		dev := login(t, s, "juliet", fmt.Sprint("device-", i), true)
		client := fmt.Sprint("token-", i)
		ok := strings.Replace(enableFor("pusher@"+domain, client), "<service>", foreign+"<service>", 1)
		if resp := iq(t, dev, "set", ok); resp.AttrValue("type") != "result" {
			t.Fatalf("enable %d with %d bytes of foreign children: %.300s", i, len(ok), resp)
		}
		big := enableWith("pusher@"+domain, client+"-big", "urn:xmpp:push2:match:important", inMatch)
		resp := iq(t, dev, "set", big)
		e := resp.Child("", "error")
		if resp.AttrValue("type") != "error" || e == nil || e.Child(stanza.NSStanzaError, "policy-violation") == nil ||
			!strings.Contains(e.ChildText(stanza.NSStanzaError, "text"), "at most 32768 bytes") {
			t.Fatalf("enable %d with %d bytes inside <match/>: %.600s, want policy-violation naming the limit", i, len(big), resp)
		}
		dev.Close()
	}

	raw, err := s.Admin("/registrations?account=juliet@" + domain)
	if err != nil {
		t.Fatal(err)
	}
	var regs []struct {
		ID          string `json:"id"`
		StoredBytes int    `json:"stored_bytes"`
	}
	if err := json.Unmarshal([]byte(raw), &regs); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if len(regs) != 5 {
		t.Fatalf("%d registrations, want 5: %s", len(regs), raw)
	}
	for _, r := range regs {
		if r.StoredBytes <= 0 || r.StoredBytes > 1024 {
			t.Errorf("registration %s stored in %d bytes, want at most 1024 (the enable was %d)", r.ID, r.StoredBytes, junkBytes)
		}
	}

	time.Sleep(300 * time.Millisecond) // the sessions' ends reach the bridge
	send(t, romeo, chat("juliet@"+domain, "amp1", "still here?"))
	got := map[string]bool{}
	for range 5 {
		got[clientOf(waitNotification(t, pusher, 15*time.Second))] = true
	}
	for i := range 5 {
		if !got[fmt.Sprint("token-", i)] {
			t.Errorf("no push for token-%d (got %v)", i, got)
		}
	}
	noNotification(t, pusher, 2*time.Second)
}
