package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/relay"
)

// RelayConfig is [relay]: push2d's Web Push relay (internal/relay,
// docs/relay.md). With a jid, registrations whose <service/> is that JID
// are posted by push2d itself to their Web Push endpoint, without a round
// trip through the XMPP server.
type RelayConfig struct {
	// JID is the push service address clients name in <service/>.
	JID string `toml:"jid"`
	// AllowHTTP accepts http:// endpoints (default: https only).
	AllowHTTP bool `toml:"allow_http"`
	// AllowNetworks are CIDR ranges the relay may connect to although they
	// are loopback, private, link-local or multicast.
	AllowNetworks []string `toml:"allow_networks"`
	MaxEndpoint   int      `toml:"max_endpoint"`
	Timeout       duration `toml:"timeout"`
	PerHost       int      `toml:"per_host"`
	Total         int      `toml:"total"`
	TTLLow        duration `toml:"ttl_low"`
	TTLNormal     duration `toml:"ttl_normal"`
	TTLHigh       duration `toml:"ttl_high"`
	// CAFile is a PEM file of extra CA certificates the relay trusts
	// besides the system's (a private push service, tests).
	CAFile string `toml:"ca_file"`

	nets []netip.Prefix
	tls  *tls.Config
}

func (c *RelayConfig) validate() []error {
	var errs []error
	if c.JID == "" {
		if len(c.AllowNetworks) > 0 || c.AllowHTTP {
			errs = append(errs, errors.New("relay: set relay.jid, the push service JID the relay serves"))
		}
		return errs
	}
	if j, err := jid.Parse(c.JID); err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		errs = append(errs, errors.New("relay.jid must be a domain JID such as webpush.example.org"))
	} else {
		c.JID = j.String()
	}
	c.nets = nil
	for i, s := range c.AllowNetworks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("relay.allow_networks[%d] %q is not a CIDR range or an address", i, s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.nets = append(c.nets, p.Masked())
	}
	if c.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(c.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			errs = append(errs, fmt.Errorf("relay.ca_file %q: no PEM certificate can be read from it", c.CAFile))
		}
		c.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if c.MaxEndpoint < 0 || c.PerHost < 0 || c.Total < 0 || c.Timeout.Duration < 0 || c.TTLLow.Duration < 0 || c.TTLNormal.Duration < 0 || c.TTLHigh.Duration < 0 {
		errs = append(errs, errors.New("relay: limits and durations must not be negative"))
	}
	return errs
}

// relayConfig is the library's configuration.
func (c *RelayConfig) relayConfig() relay.Config {
	return relay.Config{
		AllowHTTP: c.AllowHTTP, AllowNets: c.nets, MaxEndpoint: c.MaxEndpoint,
		Timeout: c.Timeout.Duration, PerHost: c.PerHost, Total: c.Total,
		TTL: relay.TTLPolicy{Low: c.TTLLow.Duration, Normal: c.TTLNormal.Duration, High: c.TTLHigh.Duration},
		TLS: c.tls,
	}
}

// directRelay delivers push2d's own notifications to the relay's JID
// straight to the relay library: the outbox hands the notification over,
// the HTTP request runs in the background, and its answer is reported to
// the outbox as the push service's would be (an error, or a confirmation),
// so the delivery policy is the same as for any push service.
type directRelay struct {
	jid   string
	relay *relay.Relay
	eng   *engine.Engine
	slots chan struct{} // bounds the notifications in flight

	mu   sync.Mutex
	sent map[string]chan struct{} // by notification id: closed once the outbox recorded the send
}

func newDirectRelay(cfg RelayConfig, eng *engine.Engine, rc relay.Config) *directRelay {
	r := relay.New(rc)
	return &directRelay{jid: cfg.JID, relay: r, eng: eng, slots: make(chan struct{}, 4*max(cfg.Total, relay.DefaultTotal)), sent: map[string]chan struct{}{}}
}

// serves reports whether a notification to "to" is the relay's.
func (r *directRelay) serves(to string) bool {
	if r == nil {
		return false
	}
	j, err := jid.Parse(to)
	return err == nil && strings.EqualFold(j.Bare().String(), r.jid)
}

// deliver is the outbox's Sender for the relay's notifications. It blocks
// while too many are in flight (back-pressure on the outbox).
func (r *directRelay) deliver(ctx context.Context, e engine.OutboxEntry) error {
	n, err := stanza.Parse([]byte(e.Stanza))
	if err != nil {
		return err
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	sent := make(chan struct{})
	r.mu.Lock()
	r.sent[e.ID] = sent
	r.mu.Unlock()
	go func() {
		defer func() { <-r.slots }()
		res := r.relay.Push(context.WithoutCancel(ctx), n)
		// The report must come after the outbox recorded this attempt
		// (OutboxSent), or it would apply to the previous one.
		select {
		case <-sent:
		case <-time.After(10 * time.Second):
		}
		r.mu.Lock()
		if r.sent[e.ID] == sent {
			delete(r.sent, e.ID)
		}
		r.mu.Unlock()
		if res.Err == nil {
			r.eng.Outbox().Confirm(e.ID, e.To)
			return
		}
		r.eng.Outbox().DeliveryError(e.ID, e.To, string(res.Err.Type), string(res.Err.Condition))
	}()
	return nil
}

// recorded is called for the outbox's OutboxSent event.
func (r *directRelay) recorded(id string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if ch, ok := r.sent[id]; ok {
		close(ch)
		delete(r.sent, id)
	}
	r.mu.Unlock()
}
