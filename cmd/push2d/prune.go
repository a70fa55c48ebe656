package main

import (
	"context"
	"time"

	"github.com/push2/push2/engine"
)

// pruneLoop forgets dedupe records older than the retention, hourly.
func (d *daemon) pruneLoop(ctx context.Context, store engine.Store) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := store.PruneMarks(now.Add(-d.eng.Config().DedupeRetention))
			if err != nil {
				d.log.Warn("prune dedupe records", "err", err)
			} else if n > 0 {
				d.log.Debug("pruned dedupe records", "count", n)
			}
		}
	}
}
