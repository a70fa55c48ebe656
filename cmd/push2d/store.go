package main

import (
	"log/slog"
	"os"
	"strings"

	"github.com/push2/push2/engine/pebblestore"
)

// openStore opens the store (repairing it with --repair), logs what it
// holds, and arranges for an unrecoverable store error to stop push2d with
// one log line (storeFailed).
func openStore(cfg Config, log *slog.Logger) (*pebblestore.Store, error) {
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
