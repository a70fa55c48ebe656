package host

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/push2/push2/host/internal/abi"
)

// limiter is a token bucket shared by everything one module logs
// (sdk/ABI.md §8 "Logging"): a guest cannot flood the daemon's log, and the
// number of lines it lost is reported with the next line that gets through.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	tokens  float64
	last    time.Time
	dropped int
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take reports whether a line may be logged, and how many were dropped
// since the last one that was.
func (l *limiter) take() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.dropped++
		return false, 0
	}
	l.tokens--
	d := l.dropped
	l.dropped = 0
	return true, d
}

func guestLevel(l int32) slog.Level {
	switch {
	case l <= abi.LogDebug:
		return slog.LevelDebug
	case l == abi.LogInfo:
		return slog.LevelInfo
	case l == abi.LogWarn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// guestLog writes one line on behalf of the guest, tagged with the module
// (name, hash, profile URIs), unless the rate limiter drops it.
func (m *Module) guestLog(level slog.Level, msg string, args ...any) bool {
	ok, dropped := m.logs.take()
	if !ok {
		return false
	}
	if dropped > 0 {
		args = append(args, "dropped_before", dropped)
	}
	m.logger.Log(context.Background(), level, "wasm: "+msg, args...)
	return true
}

// lineWriter turns a guest's stdout or stderr into log lines (sdk/ABI.md §12
// "WASI"). Partial lines are kept until the newline, up to MaxLogBytes.
type lineWriter struct {
	m     *Module
	level slog.Level
	name  string
	mu    sync.Mutex
	buf   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := abi.MaxLogBytes - len(w.buf)
			if room > 0 {
				w.buf = append(w.buf, p[:min(room, len(p))]...)
			}
			break
		}
		room := abi.MaxLogBytes - len(w.buf)
		if room > 0 {
			w.buf = append(w.buf, p[:min(room, i)]...)
		}
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit() {
	if len(w.buf) > 0 {
		w.m.guestLog(w.level, cleanText(w.buf, abi.MaxLogBytes), "source", w.name)
	}
	w.buf = w.buf[:0]
}

// flush logs a pending partial line, when the instance goes away.
func (w *lineWriter) flush() {
	w.mu.Lock()
	w.emit()
	w.mu.Unlock()
}
