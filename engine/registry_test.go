package engine_test

import (
	"context"
	"slices"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

type fakeMatch struct{ uri string }

var _ engine.MatchProfile = (*fakeMatch)(nil)

func (f *fakeMatch) ID() string { return f.uri }
func (f *fakeMatch) Provision(context.Context, *stanza.Element) (any, error) {
	return nil, nil
}
func (f *fakeMatch) Match(context.Context, *engine.MatchInput) (engine.Decision, error) {
	return engine.Decision{}, nil
}

func TestRegistryUpdateWithdraw(t *testing.T) {
	r := engine.NewRegistry()
	var seen [][]engine.ProfileInfo
	r.Subscribe(func(p []engine.ProfileInfo) { seen = append(seen, p) })
	v1, v2 := &fakeMatch{"urn:example:p"}, &fakeMatch{"urn:example:p"}
	if err := r.Update("wasm v1", []engine.MatchProfile{v1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Features(), "urn:example:p") || len(seen) != 1 {
		t.Fatalf("features %v, notifications %d", r.Features(), len(seen))
	}
	// v2 takes the URI over; withdrawing v1 afterwards leaves v2.
	r.Update("wasm v2", []engine.MatchProfile{v2}, nil, nil)
	if r.Withdraw([]engine.MatchProfile{v1}, nil) {
		t.Error("withdrew a profile that was already replaced")
	}
	if p, _ := r.Match("urn:example:p"); p != v2 {
		t.Error("the newer version was removed")
	}
	if !r.Withdraw([]engine.MatchProfile{v2}, nil) {
		t.Error("current profile not withdrawn")
	}
	if _, ok := r.Match("urn:example:p"); ok || slices.Contains(r.Features(), "urn:example:p") {
		t.Error("withdrawn profile still registered")
	}
	if err := r.Update("bad", []engine.MatchProfile{&fakeMatch{""}}, nil, nil); err == nil {
		t.Error("empty URI accepted")
	}
	if r.Features()[0] != stanza.NSPush2 {
		t.Errorf("features start with %v", r.Features())
	}
}
