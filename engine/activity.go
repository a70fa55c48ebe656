package engine

import (
	"sync"
	"time"
)

// Activity remembers when each session of an account last did something a
// user does, for <grace/> (push2.md line 35): activity on another session of
// the same user pauses pushes for the grace period. It is kept in memory
// only: after a restart the worst case is one push that grace would have
// suppressed.
type Activity struct {
	mu     sync.Mutex
	maxAge time.Duration
	last   map[string]map[string]time.Time // account → session id → time
	writes int
}

// NewActivity returns a tracker that forgets entries older than maxAge (the
// largest grace period a registration may ask for).
func NewActivity(maxAge time.Duration) *Activity {
	return &Activity{maxAge: maxAge, last: map[string]map[string]time.Time{}}
}

// Note records activity of session id of account at time at.
func (a *Activity) Note(account, id string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.last[account]
	if s == nil {
		s = map[string]time.Time{}
		a.last[account] = s
	}
	if at.After(s[id]) {
		s[id] = at
	}
	a.writes++
	if a.writes%4096 == 0 {
		a.prune(at.Add(-a.maxAge))
	}
}

// ActiveElsewhere reports whether a session of account other than id was
// active at or after since.
func (a *Activity) ActiveElsewhere(account, id string, since time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for sid, t := range a.last[account] {
		if sid != id && !t.Before(since) {
			return true
		}
	}
	return false
}

func (a *Activity) prune(before time.Time) {
	for acct, s := range a.last {
		for id, t := range s {
			if t.Before(before) {
				delete(s, id)
			}
		}
		if len(s) == 0 {
			delete(a.last, acct)
		}
	}
}
