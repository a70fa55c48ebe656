package engine_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// BenchmarkEvaluate measures the pipeline for one stanza against one
// registration: "suppressed" stops at the match profile (no store write),
// "pushed" goes through the send profile and the synced outbox write.
//
//	go test -run '^$' -bench Evaluate ./engine/
func BenchmarkEvaluate(b *testing.B) {
	for _, tc := range []struct{ name, profile, stanza string }{
		{"suppressed", "important", msgChatState},
		{"pushed", "all", msgBody},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, _, _ := newEngine(b, engine.Config{})
			ctx := context.Background()
			if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML(tc.profile)))); err != nil {
				b.Fatal(err)
			}
			stanzas := make([]*stanza.Element, 1024)
			for i := range stanzas {
				stanzas[i] = stanza.MustParse(strings.Replace(tc.stanza, `id="s`, `id="b`+strconv.Itoa(i)+`-`, 1))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st := stanzas[i%len(stanzas)]
				if i >= len(stanzas) {
					st = st.Clone()
					st.SetAttr("id", "n"+strconv.Itoa(i))
				}
				if _, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
