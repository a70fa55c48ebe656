// Command push2d is the Push 2.0 daemon: the engine behind an XEP-0114
// component connection to the XMPP server, where a bridge module forwards
// registrations and stanza events and sends the notifications
// (docs/bridge-protocol.md, docs/push2d.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pgstore"
	"github.com/push2/push2/host"
	"github.com/push2/push2/internal/casetest"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		os.Exit(runCheck(os.Args[2:], os.Stdout, os.Stderr))
	}
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: push2d [--config FILE] [--repair]       run (--repair: open a damaged store, keeping what is readable)\n       push2d check [--config FILE] [--connect]  validate the configuration (and the connection to the server)\n")
		flag.PrintDefaults()
	}
	configPath := flag.String("config", defaultConfigPath, "configuration file")
	check := flag.Bool("check", false, "validate the configuration and exit (the same as push2d check)")
	repair := flag.Bool("repair", false, "open a damaged store anyway: keep what is readable, set the rest aside and log what was lost (back up store.dir first)")
	flag.Parse()
	if *check {
		os.Exit(runCheck([]string{"--config", *configPath}, os.Stdout, os.Stderr))
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "push2d:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg.repair = *repair
	if tuneGC(os.Getenv) {
		go gcLimitFloor(ctx)
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "push2d:", err)
		os.Exit(1)
	}
}

// noAdminToken is what start-up and `push2d check` say without admin.token_file.
const noAdminToken = "admin.token_file is not set: the admin interface refuses /registrations, /disabled, /outbox and POST /ping (403) until it is; see docs/push2d.md, Admin interface"

func newLogger(cfg LogConfig) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// run is push2d's life: open the store, build the engine, serve the admin
// interface and the component connection until ctx ends, then shut down in
// order (connection, admin, store).
func run(ctx context.Context, cfg Config) error {
	log := newLogger(cfg.Log)
	store, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.BuiltinWith(cfg.profileOptions())); err != nil {
		return err
	}
	eng := engine.New(store, reg, engine.Config{
		Limits:            engine.Limits{MaxGrace: cfg.Engine.MaxGrace.Duration},
		MaxRegistrations:  cfg.Engine.MaxRegistrations,
		NotificationLimit: cfg.Engine.NotificationLimit,
		DedupeRetention:   cfg.Engine.DedupeRetention.Duration,
		RegistrationCache: cfg.Engine.RegistrationCache,
		Retry: engine.RetryPolicy{
			MaxAttempts: cfg.Delivery.MaxAttempts, BaseDelay: cfg.Delivery.BaseDelay.Duration, MaxDelay: cfg.Delivery.MaxDelay.Duration,
			MaxAge: cfg.Delivery.MaxAge.Duration, ErrorWindow: cfg.Delivery.ErrorWindow.Duration,
			MaxErrors: cfg.Delivery.MaxErrors, DisableAfter: cfg.Delivery.DisableAfter.Duration,
		},
		Logger: log,
	})
	m := newMetrics()
	d := newDaemon(cfg, eng, log, m)
	if pg, ok := store.(*pgstore.Store); ok {
		d.dbHealth = m.watchPostgres(pg, eng.Outbox())
	}
	if cfg.Relay.JID != "" {
		rc := cfg.Relay.cfg
		rc.Logger = log.With("component", "relay")
		rc.Observe = m.observeRelay
		d.relay = newDirectRelay(cfg.Relay, eng, rc)
		defer d.relay.relay.Close()
		log.Info("web push relay", "jid", cfg.Relay.JID, "allow_http", cfg.Relay.AllowHTTP, "allow_networks", cfg.Relay.AllowNetworks)
	}
	var watcher *host.Watcher
	var wasmHost *host.Host
	if cfg.Plugins.Dir != "" {
		wasmHost, err = host.New(ctx, host.Config{
			CacheDir:         cfg.Plugins.CacheDir,
			MemoryLimitPages: uint32(cfg.Plugins.MemoryLimitMiB * 16),
			StackLimitBytes:  uint32(cfg.Plugins.StackLimitKiB) << 10,
			CallTimeout:      cfg.Plugins.CallTimeout.Duration,
			QuarantineAfter:  cfg.Plugins.QuarantineAfter,
			QuarantineWindow: cfg.Plugins.QuarantineWindow,
			QuarantineRate:   cfg.Plugins.QuarantineRate,
			// One module, however slow, holds at most half of the workers:
			// its further calls fail at once and the other half keeps
			// evaluating everyone else's stanzas.
			MaxConcurrentCalls: max(1, cfg.Engine.Workers/2),
			Crypto:             webpush.NewHostCrypto(),
			Logger:             log.With("component", "wasm"),
		})
		if err != nil {
			return fmt.Errorf("plugins: %w", err)
		}
		wcfg := host.WatcherConfig{Interval: cfg.Plugins.ScanEvery.Duration}
		if cfg.Plugins.VerifyCases {
			wcfg.Verify = casetest.Verify
		}
		watcher = host.NewWatcher(wasmHost, reg, cfg.Plugins.Dir, wcfg)
		if err := watcher.Scan(ctx); err != nil {
			log.Warn("plugins: first scan", "dir", cfg.Plugins.Dir, "err", err)
		}
	}

	ln, err := listenAdmin(cfg.Admin.Listen)
	if err != nil {
		return err
	}
	if !cfg.Admin.Token.configured() {
		log.Warn(noAdminToken)
	}
	log.Info("push2d starting", "component", cfg.Component.JID, "server", cfg.Component.Address, "admin", ln.Addr().String(), "admin_token", cfg.Admin.Token.configured(), "store", cfg.storeWhere(), "profiles", len(reg.Profiles()))
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := eng.Outbox().Run(ctx, d.deliver); err != nil {
			log.Error("outbox", "err", err)
		}
	}()
	go func() { defer wg.Done(); d.run(ctx) }()
	go func() {
		defer wg.Done()
		if err := d.serveAdmin(ctx, ln); err != nil {
			log.Error("admin interface", "err", err)
		}
	}()
	if watcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watcher.Run(ctx)
		}()
	}
	wg.Wait()
	// Let in-flight evaluations finish before the profiles and the store
	// close.
	d.bridge.Wait()
	d.relay.wait()
	if watcher != nil {
		watcher.Close()
		wasmHost.Close(context.Background())
	}
	log.Info("push2d stopped")
	return nil
}
