package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// Settings are the relay's operator settings as push2d's [relay] and
// push2relay's configuration files spell them (TOML), documented in
// docs/relay.md. Zero values take Config's defaults.
type Settings struct {
	// AllowHTTP accepts http:// endpoints (default: https only).
	AllowHTTP bool `toml:"allow_http"`
	// AllowNetworks are CIDR ranges (or single addresses) the relay may
	// connect to although they are loopback, private, link-local or
	// multicast.
	AllowNetworks []string `toml:"allow_networks"`
	// CAFile is a PEM file of CA certificates trusted besides the
	// system's (a private push service, tests).
	CAFile      string   `toml:"ca_file"`
	MaxEndpoint int      `toml:"max_endpoint"`
	Timeout     Duration `toml:"timeout"`
	PerHost     int      `toml:"per_host"`
	Total       int      `toml:"total"`
	TTLLow      Duration `toml:"ttl_low"`
	TTLNormal   Duration `toml:"ttl_normal"`
	TTLHigh     Duration `toml:"ttl_high"`
}

// Duration is a time.Duration read from text such as "10s".
type Duration struct{ time.Duration }

// UnmarshalText reads a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (e.g. 10s, 1m, 24h)", b)
	}
	d.Duration = v
	return nil
}

// Config checks the settings and returns the library's configuration;
// prefix names the section in errors ("relay").
func (s Settings) Config(prefix string) (Config, error) {
	var errs []error
	c := Config{
		AllowHTTP: s.AllowHTTP, MaxEndpoint: s.MaxEndpoint, Timeout: s.Timeout.Duration,
		PerHost: s.PerHost, Total: s.Total,
		TTL: TTLPolicy{Low: s.TTLLow.Duration, Normal: s.TTLNormal.Duration, High: s.TTLHigh.Duration},
	}
	for i, v := range s.AllowNetworks {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%s.allow_networks[%d] %q is not a CIDR range or an address", prefix, i, v))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.AllowNets = append(c.AllowNets, p.Masked())
	}
	if s.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(s.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			errs = append(errs, fmt.Errorf("%s.ca_file %q: no PEM certificate can be read from it", prefix, s.CAFile))
		}
		c.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if s.MaxEndpoint < 0 || s.PerHost < 0 || s.Total < 0 {
		errs = append(errs, fmt.Errorf("%s: max_endpoint, per_host and total must not be negative", prefix))
	}
	return c, errors.Join(errs...)
}
