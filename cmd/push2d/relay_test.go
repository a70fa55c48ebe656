package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRelayConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, validConfig+"\n[relay]\njid = \"WebPush.Example.org\"\nallow_networks = [\"127.0.0.1\", \"10.0.0.0/8\"]\ntimeout = \"3s\"\nttl_high = \"30s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	rc := cfg.Relay.cfg
	if cfg.Relay.JID != "webpush.example.org" || rc.Timeout != 3*time.Second || rc.TTL.High != 30*time.Second ||
		len(rc.AllowNets) != 2 || rc.AllowNets[0] != netip.MustParsePrefix("127.0.0.1/32") {
		t.Errorf("relay config: jid %q, %+v", cfg.Relay.JID, rc)
	}
	d := &directRelay{jid: cfg.Relay.JID}
	if !d.serves("webpush.example.org/x") || d.serves("push.example.org") || (*directRelay)(nil).serves("webpush.example.org") {
		t.Error("serves")
	}
	for _, tc := range []struct{ edit, want string }{
		{"\n[relay]\nallow_http = true\n", "set relay.jid"},
		{"\n[relay]\njid = \"user@example.org\"\n", "relay.jid must be a domain"},
		{"\n[relay]\njid = \"w.example.org\"\nallow_networks = [\"localnet\"]\n", "allow_networks[0]"},
		{"\n[relay]\njid = \"w.example.org\"\nca_file = \"/nonexistent\"\n", "relay.ca_file"},
		{"\n[relay]\njid = \"w.example.org\"\ntimeout = \"-1s\"\n", "not a duration"},
	} {
		if _, err := loadConfig(writeConfig(t, validConfig+tc.edit)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.edit, err, tc.want)
		}
	}
}
