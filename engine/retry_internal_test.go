package engine

import (
	"testing"

	"github.com/push2/push2/engine/stanza"
)

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		typ  stanza.ErrorType
		cond stanza.Condition
		want bool
	}{
		{"wait", "internal-server-error", true},
		{"wait", "resource-constraint", true},
		{"cancel", "resource-constraint", true},   // transient condition, inconsistent type
		{"cancel", "remote-server-timeout", true}, // likewise
		{"wait", "item-not-found", false},         // permanent condition, inconsistent type
		{"wait", "not-authorized", false},
		{"cancel", "item-not-found", false},
		{"modify", "bad-request", false},
		{"auth", "forbidden", false},
		{"cancel", "internal-server-error", false},
	} {
		if got := retryable(tc.typ, tc.cond); got != tc.want {
			t.Errorf("retryable(%s, %s) = %v", tc.typ, tc.cond, got)
		}
	}
}
