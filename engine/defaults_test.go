package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// TestPartialLimitsFilled: a Limits with only some fields set keeps those
// and takes the defaults for the others, like RetryPolicy (a partly filled
// Limits used to refuse every registration: MaxMatches 0).
func TestPartialLimitsFilled(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{Limits: engine.Limits{MaxGrace: time.Hour}})
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all", "<grace>600</grace>")))); err != nil {
		t.Fatalf("ordinary registration refused: %v", err)
	}
	// The field that was set applies…
	_, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all", "<grace>7200</grace>"))))
	var se *stanza.Error
	if !errors.As(err, &se) || !strings.Contains(se.Text, "grace") {
		t.Errorf("grace over the set MaxGrace: %v", err)
	}
	// …and the ones that were not take their defaults.
	def := engine.DefaultLimits.MaxMatches
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(strings.Repeat(matchXML("all"), def)))); err != nil {
		t.Errorf("%d matches (the default MaxMatches) refused: %v", def, err)
	}
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(strings.Repeat(matchXML("all"), def+1)))); err == nil {
		t.Errorf("%d matches accepted: default MaxMatches not applied", def+1)
	}
	if got := e.Config().Limits; got.MaxGrace != time.Hour || got.MaxFilters != engine.DefaultLimits.MaxFilters || got.MaxSendBytes != engine.DefaultLimits.MaxSendBytes {
		t.Errorf("effective limits %+v", got)
	}
}

// TestConfigDefaults: the zero Config is DefaultConfig, field by field, and
// a set field is kept.
func TestConfigDefaults(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{Retry: engine.RetryPolicy{MaxErrors: 3}})
	got, want := e.Config(), engine.DefaultConfig()
	want.Retry.MaxErrors = 3
	if got.Limits != want.Limits || got.Retry != want.Retry || got.MaxRegistrations != want.MaxRegistrations ||
		got.NotificationLimit != want.NotificationLimit || got.DedupeRetention != want.DedupeRetention {
		t.Errorf("effective config %+v, want %+v", got, want)
	}
	if e.Outbox().Policy() != want.Retry {
		t.Errorf("outbox policy %+v, want %+v", e.Outbox().Policy(), want.Retry)
	}
}
