// Package hostile builds the hostile inputs that tests and benchmarks
// replay against push2, so that the engine's unit tests and the end-to-end
// tests send the same attack.
package hostile

import (
	"fmt"
	"strings"
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
