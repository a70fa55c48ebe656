// Package hostile builds the hostile inputs that tests and benchmarks
// replay against push2, so that the engine's unit tests and the end-to-end
// tests send the same attack.
package hostile

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// Children returns at least size bytes of elements in namespace ns, 200
// attributes each: the payload of issue 11's CPU amplification (item 5),
// which a client put inside <enable/> for push2d to store and parse again
// on every reload. It stays within engine/stanza's parse limits for sizes
// up to about 256 KiB, so that it reaches the engine.
func Children(ns string, size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, `<x%d xmlns="%s"`, i, ns)
		for j := range 200 {
			fmt.Fprintf(&b, ` a%d="0123456789abcdef"`, j)
		}
		b.WriteString("/>")
	}
	return b.String()
}

// OverLimits returns, by name, elements each over one of engine/stanza's
// parse limits as a child of a stanza, all of which Prosody accepts from a
// client (under its 256 KiB stanza size limit): issue 11 item 4's more
// than 4,096 elements and nesting deeper than 64, and item 5's ~20,000
// attributes on one element. They are built as trees, since stanza.Parse
// refuses them.
func OverLimits(ns string) map[string]*stanza.Element {
	many := stanza.NewElement(ns, "many")
	for range stanza.MaxElements + 1 {
		many.Append(stanza.NewElement(ns, "b"))
	}
	deep := stanza.NewElement(ns, "deep")
	for el, i := deep, 0; i < stanza.MaxDepth+1; i++ {
		c := stanza.NewElement(ns, "a")
		el.Append(c)
		el = c
	}
	attrs := stanza.NewElement(ns, "attrs")
	for i := range 20000 {
		attrs.Attr = append(attrs.Attr, xml.Attr{Name: xml.Name{Local: fmt.Sprint("a", i)}})
	}
	return map[string]*stanza.Element{"elements": many, "depth": deep, "attributes": attrs}
}
