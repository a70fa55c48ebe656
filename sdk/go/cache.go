package push2

// Cache keeps what a profile parsed from a registration element between
// calls, keyed by the element's exact bytes (sdk/ABI.md §14): an instance
// serves many registrations, but mostly the same few, and the same bytes
// are the same configuration, so nothing of one registration leaks into
// another's call. A call then reads the element once (push2.el_xml, which
// the host keeps serialized for registration elements) into a buffer the
// Cache reuses, and compares bytes, instead of walking it with a host call
// per child and attribute and allocating the strings it reads:
//
//	var config push2.Cache[vipConfig]
//
//	func match() push2.Decision {
//		cfg, err := config.Get(push2.MatchElement, parseConfig)
//		...
//	}
//
// The zero Cache is empty. A Cache is for one goroutine: an instance runs
// one call at a time.
type Cache[T any] struct {
	xml, scratch []byte
	val          T
	err          error
	ok           bool
}

// Get returns what parse returned for e's current bytes, calling parse (in
// this call, so it may read e) only when they differ from those of the last
// Get. If e cannot be read, parse runs and nothing is kept.
func (c *Cache[T]) Get(e Element, parse func() (T, error)) (T, error) {
	if cap(c.scratch) < 1024 {
		c.scratch = make([]byte, 1024)
	}
	buf := c.scratch[:cap(c.scratch)]
	n := rawElXML(int32(e), ptr(buf), int32(len(buf)))
	if n > int32(len(buf)) {
		buf = make([]byte, n)
		n = rawElXML(int32(e), ptr(buf), int32(len(buf)))
	}
	if n < 0 || n > int32(len(buf)) {
		c.ok = false
		return parse()
	}
	buf = buf[:n]
	if c.ok && string(buf) == string(c.xml) {
		c.scratch = buf
		return c.val, c.err
	}
	c.xml, c.scratch = buf, c.xml
	c.ok = false // parse may trap: nothing is kept until it has returned
	c.val, c.err = parse()
	c.ok = true
	return c.val, c.err
}
