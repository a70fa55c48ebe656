package engine

import (
	"log/slog"
	"time"
)

// DefaultConfig returns the engine's configuration with every default
// filled in: the one place the defaults are written. New fills each zero
// field of a Config (and of its Limits and RetryPolicy) from it, push2d's
// configuration starts from it, and docs/push2d.md lists the same values
// (cmd/push2d's TestDefaultsDocumented checks them). Clock and Logger stay
// nil: time.Now, and no logging.
func DefaultConfig() Config {
	return Config{
		Limits: DefaultLimits,
		// Like mod_cloud_notify's push_max_devices.
		MaxRegistrations: 5,
		// push2.md "Notification size": the protocol's maximum.
		NotificationLimit: maxNotificationLimit,
		// A stanza can reach the engine again when a hibernated session's
		// queue goes to offline storage, up to the hibernation limit (72 h
		// by default) later.
		DedupeRetention: 7 * 24 * time.Hour,
		// About 40 MB of heap at most; with 1,000,000 registrations an
		// account outside it costs a store read and a parse (see
		// docs/benchmarks.md "The engine", BenchmarkMillion).
		RegistrationCache: 20000,
		Retry: RetryPolicy{
			MaxAttempts: 5,
			BaseDelay:   2 * time.Second,
			MaxDelay:    5 * time.Minute,
			MaxAge:      time.Hour,
			ErrorWindow: time.Minute,
			// Like mod_cloud_notify's push_max_errors.
			MaxErrors: 16,
			// push2.md recommends no less.
			DisableAfter: 72 * time.Hour,
		},
	}
}

// DefaultLimits are generous for real clients and small enough that a
// registration cannot be used to store arbitrary data on the server.
var DefaultLimits = Limits{
	MaxMatches:     8,
	MaxFilters:     256,
	MaxGrace:       24 * time.Hour,
	MaxClientBytes: 1024,
	MaxSendBytes:   8192,
	// 32 KiB holds a <match/> with all 256 filters on typical room JIDs
	// (about 64 bytes each), or all 8 matches with an encrypted <send/>
	// (about 700 bytes with its keys).
	MaxEnableBytes: 32 << 10,
}

// maxNotificationLimit is push2.md's bound on a notification stanza.
const maxNotificationLimit = 4096

// fillZero sets *v to def if *v is zero or negative.
func fillZero[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// withDefaults returns l with each zero field set to its default.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	fillZero(&l.MaxMatches, d.MaxMatches)
	fillZero(&l.MaxFilters, d.MaxFilters)
	fillZero(&l.MaxGrace, d.MaxGrace)
	fillZero(&l.MaxClientBytes, d.MaxClientBytes)
	fillZero(&l.MaxSendBytes, d.MaxSendBytes)
	fillZero(&l.MaxEnableBytes, d.MaxEnableBytes)
	return l
}

func (p *RetryPolicy) fill() {
	d := DefaultConfig().Retry
	fillZero(&p.MaxAttempts, d.MaxAttempts)
	fillZero(&p.BaseDelay, d.BaseDelay)
	fillZero(&p.MaxDelay, d.MaxDelay)
	fillZero(&p.MaxAge, d.MaxAge)
	fillZero(&p.ErrorWindow, d.ErrorWindow)
	fillZero(&p.MaxErrors, d.MaxErrors)
	fillZero(&p.DisableAfter, d.DisableAfter)
}

func (c *Config) fill() {
	d := DefaultConfig()
	c.Limits = c.Limits.withDefaults()
	fillZero(&c.MaxRegistrations, d.MaxRegistrations)
	if c.NotificationLimit <= 0 || c.NotificationLimit > maxNotificationLimit {
		c.NotificationLimit = d.NotificationLimit
	}
	fillZero(&c.DedupeRetention, d.DedupeRetention)
	fillZero(&c.RegistrationCache, d.RegistrationCache)
	c.Retry.fill()
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
