package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// defaultSettings is defaultConfig as the settings of a file: section →
// key → value as TOML writes it (durations in their short form).
func defaultSettings(t *testing.T) map[string]map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(defaultConfig()); err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDefaultsDocumented: the defaults in docs/push2d.md's settings table
// are the ones push2d applies (engine.DefaultConfig for the engine and the
// outbox), so that the code stays the one source of truth.
func TestDefaultsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/push2d.md")
	if err != nil {
		t.Fatal(err)
	}
	def := defaultSettings(t)
	row := regexp.MustCompile("(?m)^\\| (`[a-z0-9_]+\\.[a-z0-9_]+`(?: / `[a-z0-9_.]+`)*) \\| ([^|]+) \\|")
	checked := 0
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		names := strings.Split(m[1], " / ")
		values := strings.Split(strings.TrimSpace(m[2]), " / ")
		if strings.HasPrefix(values[0], "(") {
			continue // (required), (none)…: no default
		}
		if len(values) != len(names) {
			t.Errorf("%s: %d settings, %d defaults", m[1], len(names), len(values))
			continue
		}
		section := ""
		for i, name := range names {
			name = strings.Trim(name, "`")
			if s, k, ok := strings.Cut(name, "."); ok {
				section, name = s, k
			}
			got, ok := def[section][name]
			if !ok {
				t.Errorf("docs/push2d.md documents %s.%s, which push2d does not have", section, name)
				continue
			}
			if want := strings.Trim(values[i], "`"); fmt.Sprint(got) != want {
				t.Errorf("%s.%s: docs/push2d.md says %s, push2d's default is %v", section, name, want, got)
			}
			checked++
		}
	}
	if checked < 25 {
		t.Errorf("checked only %d documented defaults: did the table's format change?", checked)
	}
}

// TestExampleUsesDefaults: examples/push2d.toml sets the defaulted settings
// it shows to their defaults (it may set what has none, like the JID).
func TestExampleUsesDefaults(t *testing.T) {
	var ex map[string]map[string]any
	if _, err := toml.DecodeFile("../../examples/push2d.toml", &ex); err != nil {
		t.Fatal(err)
	}
	def := defaultSettings(t)
	for section, keys := range ex {
		for key, v := range keys {
			d, ok := def[section][key]
			if !ok {
				continue // no default (TestExampleConfig refuses unknown settings)
			}
			if zero := fmt.Sprint(d); zero == "" || zero == "0" || zero == "false" || zero == "[]" {
				continue // no default
			}
			if fmt.Sprint(v) != fmt.Sprint(d) {
				t.Errorf("examples/push2d.toml: %s.%s = %v, but the default is %v (say so if it is meant to differ)", section, key, v, d)
			}
		}
	}
}
