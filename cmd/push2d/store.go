package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/pgstore"
)

// loadDSN reads store.dsn_file into DSN and checks that the password is
// kept private: the file (like admin.token_file) must not be accessible by
// group or others, and a DSN with a password written in the config file
// itself needs a config file that is private too. Errors name the files,
// never the DSN.
func (c *StoreConfig) loadDSN(cfgPath string) error {
	if c.DSNFile != "" {
		if c.DSN != "" {
			return errors.New("set store.dsn or store.dsn_file, not both")
		}
		dsn, err := pgstore.ReadDSNFile(c.DSNFile)
		if err != nil {
			return fmt.Errorf("store.dsn_file: %w", err)
		}
		c.DSN = dsn
		return nil
	}
	if c.DSN != "" && dsnHasPassword(c.DSN) {
		fi, err := os.Stat(cfgPath)
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("store.dsn holds a password but the config file is accessible by group or others (mode %04o): move the DSN to store.dsn_file (mode 0600) or run chmod 600 %s", perm, cfgPath)
		}
	}
	return nil
}

// dsnHasPassword reports whether a DSN (URL or key=value) carries a
// password; one that cannot be told counts as carrying one.
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, ok := u.User.Password()
		return ok || u.Query().Has("password")
	} else if err != nil && strings.Contains(dsn, "://") {
		return true
	}
	return strings.Contains(strings.ToLower(dsn), "password")
}

// openStore opens the store of cfg.Store.Kind.
func openStore(cfg Config, log *slog.Logger) (engine.Store, error) {
	if cfg.Store.Kind == "postgres" {
		return openPostgres(cfg, log)
	}
	return openPebble(cfg, log)
}

// openPostgres connects to store.dsn, creating or migrating the schema
// (engine/pgstore), and logs what the database holds. The log and errors
// name the server as user@host:port/db, never the password.
func openPostgres(cfg Config, log *slog.Logger) (engine.Store, error) {
	st, err := pgstore.Open(context.Background(), cfg.Store.DSN, pgstore.Options{})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	c, err := st.Count()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	log.Info("store opened", "kind", "postgres", "database", st.Where(), "schema", pgstore.SchemaVersion(),
		"registrations", c.Registrations, "outbox", c.Outbox, "dedupe_marks", c.Marks, "error_states", c.States, "disabled", c.Disabled)
	return st, nil
}

// openPebble opens the Pebble store (repairing it with --repair), logs what it
// holds, and arranges for an unrecoverable store error to stop push2d with
// one log line (storeFailed).
func openPebble(cfg Config, log *slog.Logger) (engine.Store, error) {
	dir := cfg.Store.Dir
	st, rep, err := pebblestore.OpenWith(dir, pebblestore.Options{
		MinFreeBytes: uint64(cfg.Store.MinFreeMiB) << 20,
		Repair:       cfg.repair,
		OnFatal:      func(err error) { storeFailed(log, dir, err, os.Exit) },
		Logger:       log.With("component", "store"),
	})
	if err != nil {
		return nil, err
	}
	if len(rep.Repaired) > 0 {
		attrs := []any{"dir", dir, "damage", strings.Join(rep.Damage, "; "), "done", strings.Join(rep.Repaired, "; "), "kept", rep.Recovered.String()}
		if rep.Shutdown != nil {
			attrs = append(attrs, "at_last_shutdown", rep.Shutdown.String())
		}
		if rep.Lost != (pebblestore.Counts{}) {
			attrs = append(attrs, "written_past_the_damage", rep.Lost.String())
		}
		log.Warn("store repaired", attrs...)
	}
	for _, n := range rep.Notes {
		log.Info("store: "+n, "dir", dir)
	}
	last := "a crash, or a first start"
	if rep.Shutdown != nil {
		last = "a clean shutdown"
	}
	c := rep.Recovered
	log.Info("store opened", "dir", dir, "after", last, "registrations", c.Registrations, "outbox", c.Outbox,
		"dedupe_marks", c.Marks, "error_states", c.States, "disabled", c.Disabled)
	return st, nil
}

// storeFailed is the end of push2d when its store cannot go on (Pebble's
// fatal error: a WAL or MANIFEST write that failed, on a full disk say).
// Every write reported done is on disk; the one that failed was not
// reported done, and Pebble cannot take another, so push2d stops — with one
// line, not a Go panic trace — and the service manager may restart it once
// the cause is fixed. The outbox survives the restart.
func storeFailed(log *slog.Logger, dir string, err error, exit func(int)) {
	log.Error("store failed, push2d stops: free space on (or check) the store's filesystem, then start push2d again; nothing reported done is lost", "dir", dir, "err", err)
	exit(1)
}

// storeWhere names the store for the log: the directory, or the database
// without its password.
func (c *Config) storeWhere() string {
	if c.Store.Kind == "postgres" {
		return "postgres:" + pgstore.Redact(c.Store.DSN)
	}
	return c.Store.Dir
}
