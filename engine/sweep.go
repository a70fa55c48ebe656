package engine

import (
	"context"
	"sync"
	"time"
)

// SweepLeader is implemented by a store several engines share (several
// push2d instances on one PostgreSQL database) whose instances elect one of
// them to run the periodic sweeps (the dedupe retention: PruneMarks), so
// that N instances run one sweep, not N. The lead is a lease: an instance
// that dies holding it loses it when the lease runs out, and another
// takes it at its next try.
type SweepLeader interface {
	// LeadSweeps takes or renews owner's lead for ttl, unless another
	// owner holds an unexpired one, and reports whether owner leads. A ttl
	// of 0 gives owner's lead up, so that another instance takes it at its
	// next try.
	LeadSweeps(owner string, ttl time.Duration) (bool, error)
}

// leadTick is how often an outbox on a SweepLeader store tries to take or
// renew the lead; the lease is three ticks, so an instance that dies
// holding the lead is replaced within four.
const leadTick = 10 * time.Second

// sweeper runs the periodic sweeps of one outbox: every sweepEvery, or on a
// SweepLeader store every sweepEvery while this instance leads (and at once
// when it takes the lead: the previous leader's last sweep time is not
// known, and a sweep is idempotent).
type sweeper struct {
	o      *Outbox
	leader SweepLeader // nil: not elected, always sweeps
	tick   time.Duration

	mu      sync.Mutex
	leading bool
	last    time.Time
	count   int
}

func newSweeper(o *Outbox) *sweeper {
	s := &sweeper{o: o, tick: o.sweepEvery}
	if l, ok := o.store.(SweepLeader); ok && o.shared != nil {
		s.leader = l
		s.tick = min(o.sweepEvery, leadTick)
	}
	return s
}

// start sweeps once now (if this instance leads) and then in the
// background until ctx ends; the returned function waits for the end.
func (s *sweeper) start(ctx context.Context) func() {
	s.round()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.resign()
				return
			case <-t.C:
				s.round()
			}
		}
	}()
	return func() { <-done }
}

// round renews the lead (if elected) and sweeps if one is due.
func (s *sweeper) round() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader != nil {
		ok, err := s.leader.LeadSweeps(s.o.owner, 3*s.tick)
		if err != nil {
			s.o.log.Warn("outbox: take the lead of the periodic sweeps", "err", err)
			ok = false
		}
		if ok != s.leading {
			s.leading = ok
			if ok {
				s.o.log.Info("outbox: this instance runs the periodic sweeps (dedupe pruning) for every instance", "every", s.o.sweepEvery)
				s.last = time.Time{}
			} else {
				s.o.log.Info("outbox: another instance runs the periodic sweeps")
			}
		}
		if !ok {
			return
		}
	}
	// Half a tick of slack: the ticker may fire a hair before sweepEvery.
	if now := time.Now(); s.last.IsZero() || now.Sub(s.last) >= s.o.sweepEvery-s.tick/2 {
		s.o.prune()
		s.last = now
		s.count++
	}
}

// resign gives the lead up at shutdown, so that another instance takes it
// at its next try rather than after the lease.
func (s *sweeper) resign() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leader == nil || !s.leading {
		return
	}
	s.leading = false
	if _, err := s.leader.LeadSweeps(s.o.owner, 0); err != nil {
		s.o.log.Warn("outbox: give up the lead of the periodic sweeps", "err", err)
	}
}

// Sweeps reports how many periodic sweeps this outbox has run and whether,
// on a store several engines share, it now leads them (push2d's
// push2_sweep_leader metric). Without a SweepLeader store every outbox
// leads its own.
func (o *Outbox) Sweeps() (count int, leading bool) {
	o.mu.Lock()
	s := o.sweeper
	o.mu.Unlock()
	if s == nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.leader == nil || s.leading
}
