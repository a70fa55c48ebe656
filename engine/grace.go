package engine

import (
	"fmt"
	"sync"
	"time"
)

// activity remembers when each session of an account last did something a
// user does, for <grace/> (push2.md "Client registers to receive push
// notifications", <grace/>): activity on another session of the same user
// pauses pushes for the grace period. It is kept in memory only: after a
// restart the worst case is one push that grace would have suppressed.
type activity struct {
	mu     sync.Mutex
	maxAge time.Duration
	last   map[string]map[string]time.Time // account → session id → time
	writes int
}

// newActivity returns a tracker that forgets entries older than maxAge (the
// largest grace period a registration may ask for).
func newActivity(maxAge time.Duration) *activity {
	return &activity{maxAge: maxAge, last: map[string]map[string]time.Time{}}
}

// note records activity of session id of account at time at.
func (a *activity) note(account, id string, at time.Time) {
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

// activeElsewhere reports whether a session of account other than id was
// active at or after since.
func (a *activity) activeElsewhere(account, id string, since time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for sid, t := range a.last[account] {
		if sid != id && !t.Before(since) {
			return true
		}
	}
	return false
}

func (a *activity) prune(before time.Time) {
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

// NoteActivity records that session id of account did something a user does
// (sent a message, a chat state…), for <grace/>.
func (e *Engine) NoteActivity(account, id string, at time.Time) {
	if j, err := NormalizeJID(account); err == nil {
		e.activity.note(j.Bare().String(), id, at)
	}
}

// inGrace reports whether m's <grace/> holds the push back: another session
// of the user was active within the grace period. Calls are never held
// back: a call that waits for a grace period is a missed call.
func (e *Engine) inGrace(r *Registration, m *Match, c *Context, facts *Facts) (string, bool) {
	if m.Grace <= 0 || facts.Call == CallPropose || facts.Call == CallRetract {
		return "", false
	}
	if !e.activity.activeElsewhere(r.Account, r.ID, c.Now.Add(-m.Grace)) {
		return "", false
	}
	return fmt.Sprintf("grace: another session was active in the last %s", m.Grace), true
}
