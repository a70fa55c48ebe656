package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/push2/push2/engine"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/xep0357"
	"mellium.im/xmpp/jid"
)

// Config is push2d's configuration file (TOML). Every field is documented in
// docs/push2d.md; examples/push2d.toml is a ready example.
type Config struct {
	Component ComponentConfig `toml:"component"`
	Store     StoreConfig     `toml:"store"`
	Engine    EngineConfig    `toml:"engine"`
	Delivery  DeliveryConfig  `toml:"delivery"`
	XEP0357   XEP0357Config   `toml:"xep0357"`
	// Legacy is [legacy], the old name of [xep0357], still accepted:
	// loadConfig copies it into XEP0357. Setting both is an error.
	Legacy  XEP0357Config `toml:"legacy"`
	Relay   RelayConfig   `toml:"relay"`
	Plugins PluginsConfig `toml:"plugins"`
	Admin   AdminConfig   `toml:"admin"`
	Log     LogConfig     `toml:"log"`

	// repair is push2d's --repair flag (not a setting: a damaged store is
	// repaired once, on purpose, not at every start).
	repair bool
}

// ComponentConfig is the XEP-0114 connection to the XMPP server.
type ComponentConfig struct {
	// JID is the component's address, as in Prosody's Component line.
	JID string `toml:"jid"`
	// Address is the server's component port.
	Address string `toml:"address"`
	// Secret or SecretFile (one of them): the component secret. Never logged.
	Secret     string `toml:"secret"`
	SecretFile string `toml:"secret_file"`
	// Domains are the XMPP server domains whose bridge may talk to push2d;
	// stanzas from anywhere else are refused.
	Domains []string `toml:"domains"`
	// ReconnectMin/Max bound the back-off between connection attempts.
	ReconnectMin duration `toml:"reconnect_min"`
	ReconnectMax duration `toml:"reconnect_max"`
}

// StoreConfig says where registrations live: kind "pebble" (Dir, the
// default) or "postgres" (DSN or DSNFile).
type StoreConfig struct {
	Kind string `toml:"kind"`
	Dir  string `toml:"dir"`
	// DSN or DSNFile (one of them, kind "postgres"): the PostgreSQL
	// connection string. It holds the database password: never logged;
	// DSNFile, like admin.token_file, must not be readable by group or
	// others, and an inline DSN with a password needs a private config file.
	DSN     string `toml:"dsn"`
	DSNFile string `toml:"dsn_file"`
	// MinFreeMiB: below this much free space on the store's filesystem,
	// new registrations are refused (wait/resource-constraint) and pushes
	// are still delivered. 0: no minimum.
	MinFreeMiB int `toml:"min_free_mib"`
}

// EngineConfig holds the engine's operator settings.
type EngineConfig struct {
	MaxRegistrations  int      `toml:"max_registrations"`
	NotificationLimit int      `toml:"notification_limit"`
	MaxGrace          duration `toml:"max_grace"`
	DedupeRetention   duration `toml:"dedupe_retention"`
	// Workers bounds how many events are evaluated at once.
	Workers int `toml:"workers"`
	// RegistrationCache bounds the parsed registrations kept in memory
	// (engine.Config.RegistrationCache).
	RegistrationCache int `toml:"registration_cache"`
}

// DeliveryConfig is the outbox's error policy (engine.RetryPolicy).
type DeliveryConfig struct {
	MaxAttempts  int      `toml:"max_attempts"`
	BaseDelay    duration `toml:"retry_base_delay"`
	MaxDelay     duration `toml:"retry_max_delay"`
	MaxAge       duration `toml:"max_age"`
	ErrorWindow  duration `toml:"error_window"`
	MaxErrors    int      `toml:"max_errors"`
	DisableAfter duration `toml:"disable_after"`
}

// XEP0357Config serves XEP-0357 (urn:xmpp:push:0) clients from the same
// engine (package profiles/xep0357), with mod_cloud_notify's privacy
// options.
type XEP0357Config struct {
	Enabled       bool   `toml:"enabled"`
	WithBody      bool   `toml:"with_body"`      // push_notification_with_body
	WithSender    bool   `toml:"with_sender"`    // push_notification_with_sender
	ImportantBody string `toml:"important_body"` // push_notification_important_body
}

// PluginsConfig is the WebAssembly profile host (host.Config) and the
// directory it hot-loads.
type PluginsConfig struct {
	// Dir is watched for *.wasm modules; empty disables plugins.
	Dir string `toml:"dir"`
	// CacheDir keeps compiled code between restarts (empty: in memory).
	CacheDir        string   `toml:"cache_dir"`
	MemoryLimitMiB  int      `toml:"memory_limit_mib"`
	StackLimitKiB   int      `toml:"stack_limit_kib"`
	CallTimeout     duration `toml:"call_timeout"`
	QuarantineAfter int      `toml:"quarantine_after"`
	// QuarantineWindow and QuarantineRate also quarantine a module failing
	// intermittently: QuarantineRate of its last QuarantineWindow calls.
	QuarantineWindow int     `toml:"quarantine_window"`
	QuarantineRate   float64 `toml:"quarantine_rate"`
	// VerifyCases runs the cases shipped next to a module (NAME.cases/)
	// before it goes live; a module failing them is not loaded.
	VerifyCases bool     `toml:"verify_cases"`
	ScanEvery   duration `toml:"scan_every"`
}

// AdminConfig is the admin HTTP interface: health, metrics, profiles,
// registrations, ping (docs/push2d.md "Admin interface"). It must listen on a
// loopback address; everything but /healthz, /metrics and /profiles needs
// the bearer token of TokenFile.
type AdminConfig struct {
	Listen string `toml:"listen"`
	// TokenFile holds the bearer token (mode 0600 or stricter). Empty: the
	// endpoints that need the token answer 403.
	TokenFile string `toml:"token_file"`
	// PingBurst pings of one account may follow each other at once; after
	// that one more is allowed every PingInterval (a token bucket).
	PingBurst    int      `toml:"ping_burst"`
	PingInterval duration `toml:"ping_interval"`

	// Token is read from TokenFile by loadConfig; it is not a setting of
	// its own (a token inline in the file would sit in a file often kept
	// readable, so there is none).
	Token adminToken `toml:"-"`
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 72h)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the shortest form ParseDuration reads back: 5m, not
// 5m0s (the form docs/push2d.md uses).
func (d duration) MarshalText() ([]byte, error) {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return []byte(s), nil
}

var defaultXEP0357 = XEP0357Config{Enabled: true, ImportantBody: "New Message!"}

// defaultConfig is the configuration before the file is read. The engine's
// and the outbox's settings start from engine.DefaultConfig, where their
// defaults are written.
func defaultConfig() Config {
	eng := engine.DefaultConfig()
	return Config{
		Component: ComponentConfig{
			Address:      "127.0.0.1:5347",
			ReconnectMin: duration{500 * time.Millisecond},
			ReconnectMax: duration{30 * time.Second},
		},
		Store: StoreConfig{Kind: "pebble", Dir: "/var/lib/push2", MinFreeMiB: 64},
		Engine: EngineConfig{
			MaxRegistrations: eng.MaxRegistrations, NotificationLimit: eng.NotificationLimit,
			MaxGrace: duration{eng.Limits.MaxGrace}, DedupeRetention: duration{eng.DedupeRetention}, Workers: 16,
			RegistrationCache: eng.RegistrationCache,
		},
		Delivery: DeliveryConfig{
			MaxAttempts: eng.Retry.MaxAttempts, BaseDelay: duration{eng.Retry.BaseDelay}, MaxDelay: duration{eng.Retry.MaxDelay},
			MaxAge: duration{eng.Retry.MaxAge}, ErrorWindow: duration{eng.Retry.ErrorWindow}, MaxErrors: eng.Retry.MaxErrors,
			DisableAfter: duration{eng.Retry.DisableAfter},
		},
		XEP0357: defaultXEP0357,
		Legacy:  defaultXEP0357,
		Plugins: PluginsConfig{MemoryLimitMiB: 64, StackLimitKiB: 1024, CallTimeout: duration{100 * time.Millisecond}, QuarantineAfter: 5, QuarantineWindow: 20, QuarantineRate: 0.5, VerifyCases: true, ScanEvery: duration{time.Second}},
		Admin:   AdminConfig{Listen: "127.0.0.1:5380", PingBurst: 3, PingInterval: duration{20 * time.Second}},
		Log:     LogConfig{Level: "info", Format: "text"},
	}
}

// profileOptions is the configuration's part of the profile set
// (profiles.BuiltinWith, which push2 simulate calls too).
func (c *Config) profileOptions() profiles.Options {
	var o profiles.Options
	if c.XEP0357.Enabled {
		body := c.XEP0357.ImportantBody
		o.XEP0357 = &xep0357.Options{WithBody: c.XEP0357.WithBody, WithSender: c.XEP0357.WithSender, ImportantBody: &body}
	}
	return o
}

// loadConfig reads and validates a configuration file.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	md, err := toml.DecodeFile(path, &cfg)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return cfg, fmt.Errorf("config %s: unknown setting %q", path, und[0].String())
	}
	if md.IsDefined("legacy") {
		if md.IsDefined("xep0357") {
			return cfg, fmt.Errorf("config %s: [legacy] is the old name of [xep0357]; keep only [xep0357]", path)
		}
		cfg.XEP0357 = cfg.Legacy
	}
	if cfg.Component.SecretFile != "" {
		if cfg.Component.Secret != "" {
			return cfg, fmt.Errorf("config %s: set component.secret or component.secret_file, not both", path)
		}
		b, err := os.ReadFile(cfg.Component.SecretFile)
		if err != nil {
			return cfg, fmt.Errorf("config %s: component.secret_file: %w", path, err)
		}
		cfg.Component.Secret = strings.TrimSpace(string(b))
	}
	if err := cfg.Store.loadDSN(path); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.Admin.TokenFile != "" {
		tok, err := readAdminToken(cfg.Admin.TokenFile)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		cfg.Admin.Token = tok
	}
	return cfg, cfg.validate()
}

func (c *Config) validate() error {
	var errs []error
	if j, err := jid.Parse(c.Component.JID); err != nil || c.Component.JID == "" || j.Localpart() != "" || j.Resourcepart() != "" {
		errs = append(errs, errors.New("component.jid must be a domain JID such as push2.example.org"))
	}
	if c.Component.Address == "" {
		errs = append(errs, errors.New("component.address is required (host:port of the server's component port)"))
	}
	if c.Component.Secret == "" {
		errs = append(errs, errors.New("component.secret (or secret_file) is required"))
	}
	if len(c.Component.Domains) == 0 {
		errs = append(errs, errors.New("component.domains must list the XMPP server domain(s) the bridge runs on"))
	}
	for i, d := range c.Component.Domains {
		j, err := jid.Parse(d)
		if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
			errs = append(errs, fmt.Errorf("component.domains[%d] %q is not a domain", i, d))
			continue
		}
		c.Component.Domains[i] = j.String()
	}
	if c.Component.ReconnectMin.Duration <= 0 || c.Component.ReconnectMax.Duration < c.Component.ReconnectMin.Duration {
		errs = append(errs, errors.New("component.reconnect_min must be positive and at most reconnect_max"))
	}
	switch c.Store.Kind {
	case "pebble":
		if c.Store.Dir == "" {
			errs = append(errs, errors.New("store.dir is required"))
		}
	case "postgres":
		if c.Store.DSN == "" {
			errs = append(errs, errors.New(`store.dsn (or dsn_file) is required with kind = "postgres"`))
		}
	default:
		errs = append(errs, fmt.Errorf(`store.kind %q: must be "pebble" or "postgres"`, c.Store.Kind))
	}
	if c.Store.MinFreeMiB < 0 {
		errs = append(errs, errors.New("store.min_free_mib must be 0 (no minimum) or more"))
	}
	if c.Engine.NotificationLimit < 512 || c.Engine.NotificationLimit > 4096 {
		errs = append(errs, errors.New("engine.notification_limit must be between 512 and 4096 bytes"))
	}
	if c.Engine.MaxRegistrations < 1 {
		errs = append(errs, errors.New("engine.max_registrations must be at least 1"))
	}
	dl := c.Delivery
	if dl.MaxAttempts < 1 || dl.MaxErrors < 1 || dl.BaseDelay.Duration <= 0 || dl.MaxDelay.Duration < dl.BaseDelay.Duration || dl.MaxAge.Duration <= 0 || dl.ErrorWindow.Duration <= 0 || dl.DisableAfter.Duration <= 0 {
		errs = append(errs, errors.New("delivery: max_attempts and max_errors must be at least 1, durations positive, retry_max_delay at least retry_base_delay"))
	}
	if p := c.Plugins; p.MemoryLimitMiB < 1 || p.MemoryLimitMiB > 4096 || p.CallTimeout.Duration <= 0 || p.QuarantineAfter < 1 || p.ScanEvery.Duration <= 0 {
		errs = append(errs, errors.New("plugins: memory_limit_mib must be 1–4096, call_timeout and scan_every positive, quarantine_after at least 1"))
	}
	if err := checkAdminListen(c.Admin.Listen); err != nil {
		errs = append(errs, err)
	}
	if c.Admin.PingBurst < 1 || c.Admin.PingInterval.Duration <= 0 {
		errs = append(errs, errors.New("admin.ping_burst must be at least 1 and admin.ping_interval positive"))
	}
	if p := c.Plugins; p.StackLimitKiB < 16 || p.StackLimitKiB > 32768 || p.QuarantineWindow < 1 || p.QuarantineWindow > 64 || !(p.QuarantineRate > 0 && p.QuarantineRate <= 1) {
		errs = append(errs, errors.New("plugins: stack_limit_kib must be 16–32768, quarantine_window 1–64, quarantine_rate above 0 and at most 1"))
	}
	errs = append(errs, c.Relay.validate()...)
	if c.Engine.RegistrationCache < 1 {
		errs = append(errs, errors.New("engine.registration_cache must be at least 1"))
	}
	if c.Engine.Workers < 1 {
		errs = append(errs, errors.New("engine.workers must be at least 1"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}
