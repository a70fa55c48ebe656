package stanza

import "strings"

// Namespaces, each written once for the whole repository: the pipeline, the
// built-in profiles, the WebAssembly host and the commands all refer to
// these names rather than repeating the URIs.

// Push 2.0 (push2.md): the registration namespace and the
// prefixes of the match and send profile URIs.
const (
	NSPush2     = "urn:xmpp:push2:0"
	MatchPrefix = "urn:xmpp:push2:match:"
	SendPrefix  = "urn:xmpp:push2:send:"
	// NSRFC8291 is the namespace of the <encrypted/> child of
	// <notification/> in the send profile
	// urn:xmpp:push2:send:sce+rfc8291+rfc8292:0.
	NSRFC8291 = "urn:xmpp:sce:rfc8291:0"
)

// Stream namespaces. A stanza read from a component or server stream is
// normalized to jabber:client (see ReadElement) so profiles see one
// namespace.
const (
	NSClient          = "jabber:client"
	NSComponentAccept = "jabber:component:accept"
	NSServer          = "jabber:server"
	NSStanzaError     = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSXML             = "http://www.w3.org/XML/1998/namespace"
)

// XEP-0357 (Push Notifications) and what it builds on: data forms
// (XEP-0004) and publish-subscribe (XEP-0060).
const (
	NSXEP0357              = "urn:xmpp:push:0"
	NSPushSummary          = "urn:xmpp:push:summary" // FORM_TYPE of the XEP-0357 summary form
	NSDataForm             = "jabber:x:data"
	NSPubSub               = "http://jabber.org/protocol/pubsub"
	NSPubSubEvent          = "http://jabber.org/protocol/pubsub#event"
	NSPubSubPublishOptions = "http://jabber.org/protocol/pubsub#publish-options"
)

// Namespaces of the payloads the stanza classification (facts) and the
// minimizer look at, by XEP.
const (
	NSStanzaID    = "urn:xmpp:sid:0"                        // XEP-0359
	NSForward     = "urn:xmpp:forward:0"                    // XEP-0297
	NSDelay       = "urn:xmpp:delay"                        // XEP-0203
	NSDiscoInfo   = "http://jabber.org/protocol/disco#info" // XEP-0030
	NSSCE         = "urn:xmpp:sce:1"                        // XEP-0420
	NSCarbons     = "urn:xmpp:carbons:2"                    // XEP-0280
	NSXHTMLIM     = "http://jabber.org/protocol/xhtml-im"   // XEP-0071
	NSMarkup      = "urn:xmpp:markup:0"                     // XEP-0394
	NSReference   = "urn:xmpp:reference:0"                  // XEP-0372
	NSFallback    = "urn:xmpp:fallback:0"                   // XEP-0428
	NSFallbackOld = "urn:xmpp:feature-fallback:0"           // XEP-0428, old namespace
	NSReply       = "urn:xmpp:reply:0"                      // XEP-0461
	NSOOB         = "jabber:x:oob"                          // XEP-0066
	NSSIMS        = "urn:xmpp:sims:1"                       // XEP-0385
	NSSFS         = "urn:xmpp:sfs:0"                        // XEP-0447
	NSThumbs      = "urn:xmpp:thumbs:1"                     // XEP-0264
	NSFileMeta    = "urn:xmpp:file:metadata:0"              // XEP-0446
	NSChatStates  = "http://jabber.org/protocol/chatstates" // XEP-0085
	NSReceipts    = "urn:xmpp:receipts"                     // XEP-0184
	NSMarkers     = "urn:xmpp:chat-markers:0"               // XEP-0333
	NSHints       = "urn:xmpp:hints"                        // XEP-0334
	NSMsgEvents   = "jabber:x:event"                        // XEP-0022
	NSCaps        = "http://jabber.org/protocol/caps"       // XEP-0115
	NSIdle        = "urn:xmpp:idle:1"                       // XEP-0319
	NSVCardUpdate = "vcard-temp:x:update"                   // XEP-0153
	NSStyling     = "urn:xmpp:styling:0"                    // XEP-0393
	NSNick        = "http://jabber.org/protocol/nick"       // XEP-0172
	NSAddress     = "http://jabber.org/protocol/address"    // XEP-0033
	NSEME         = "urn:xmpp:eme:0"                        // XEP-0380
	NSCorrection  = "urn:xmpp:message-correct:0"            // XEP-0308
	NSSpoiler     = "urn:xmpp:spoiler:0"                    // XEP-0382
	NSOccupantID  = "urn:xmpp:occupant-id:0"                // XEP-0421
	NSMUC         = "http://jabber.org/protocol/muc"        // XEP-0045
	NSMUCUser     = "http://jabber.org/protocol/muc#user"   // XEP-0045
	NSMUCInvite   = "jabber:x:conference"                   // XEP-0249
	NSOMEMOLegacy = "eu.siacs.conversations.axolotl"        // XEP-0384, legacy namespace
	NSOMEMO2      = "urn:xmpp:omemo:2"                      // XEP-0384
	NSOX          = "urn:xmpp:openpgp:0"                    // XEP-0373
	NSLegacyPGP   = "jabber:x:encrypted"                    // XEP-0027
	NSJMI         = "urn:xmpp:jingle-message:0"             // XEP-0353
	NSReactions   = "urn:xmpp:reactions:0"                  // XEP-0444
	NSRetract     = "urn:xmpp:message-retract:1"            // XEP-0424
	NSRetract0    = "urn:xmpp:message-retract:0"            // XEP-0424, old namespace
	NSModerate    = "urn:xmpp:message-moderate:1"           // XEP-0425
	NSModerate0   = "urn:xmpp:message-moderate:0"           // XEP-0425, old namespace
	NSAttention   = "urn:xmpp:attention:0"                  // XEP-0224
)

// IsReservedURI reports whether uri is in one of the prefixes push2.md
// reserves for profiles defined by XEPs.
func IsReservedURI(uri string) bool {
	return strings.HasPrefix(uri, MatchPrefix) || strings.HasPrefix(uri, SendPrefix)
}
