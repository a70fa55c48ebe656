// Package bridgeproto is push2d's side of the bridge protocol, version 1
// (urn:push2:bridge:1, docs/bridge-protocol.md): the codec of every message
// the bridge module inside the XMPP server and push2d exchange over the
// XEP-0114 component stream, and the logic that serves them with the
// engine.
//
// The codec (codec.go) turns each message kind into a Go value and back:
// the enable and disable IQs ("Enable and disable"), the feature list
// ("Features"), stanza events and their acks ("Stanza events"),
// notifications ("Notifications"), delivery errors and reports ("Delivery
// errors", "XEP-0357 publishes and delivery reports") and session activity
// ("Session activity"). Parsing answers malformed input with an
// *stanza.Error carrying the condition the bridge gets back.
//
// Service (service.go) is the logic: who may speak (only the configured
// server domains, for their own accounts), what each message does to the
// engine, what goes back, and which delivery reports count (only from the
// notification's push service, bare JID). It writes through a Sender, the
// one thing it needs from the connection, so that it runs, and is tested,
// without a server; a bridge for another XMPP server can be tested against
// it the same way (service_test.go shows how).
package bridgeproto
