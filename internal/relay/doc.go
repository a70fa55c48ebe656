// Package relay is push2's Web Push relay: it turns one Push 2.0
// notification (push2.md "Push notifications", a
// <notification xmlns='urn:xmpp:push2:0'/> sent to a push service JID) into
// one RFC 8030 push message request to the endpoint the notification names
// in <client/>, and maps the push service's answer back to the XMPP stanza
// error the sending server's delivery policy understands (docs/relay.md has
// the table).
//
// The mapping (RFC 8030 §5, RFC 8291 §4, RFC 8292 §3):
//
//   - POST to <client/>: https only unless Config.AllowHTTP, at most
//     Config.MaxEndpoint bytes, no redirects followed;
//   - the body is the base64-decoded <encrypted><payload/></encrypted>
//     (RFC 8291's aes128gcm body, at most 4096 bytes, RFC 8291 §4), with
//     Content-Encoding: aes128gcm and Content-Type: application/octet-stream;
//     a notification without <encrypted/> (notify-only) is posted with an
//     empty body;
//   - Urgency (RFC 8030 §5.3) from <priority/>, high for <voip/>;
//   - TTL (RFC 8030 §5.2, mandatory) from Config.TTL by priority: Push 2.0
//     carries none;
//   - Authorization: vapid t=<jwt>, k=<key> (RFC 8292 §3) when the
//     notification has a <jwt/>, after checking that the token verifies
//     with its key, that its "aud" is the endpoint's origin and that its
//     "exp" lies in the future (at most 24 hours ahead).
//
// The HTTP client is an outbound proxy that anyone who may send to the relay
// can aim, so it is built not to be one into the operator's network: every
// address it connects to is checked when the connection is made (so a DNS
// answer that changes between a check and the dial cannot slip through),
// loopback, private, link-local, multicast and unspecified addresses are
// refused unless Config.AllowNets lists them, no proxy from the environment
// is used, requests are bounded per endpoint host and in total and by a
// timeout, and neither the endpoint's path (a capability URL), the token
// nor the payload ever reaches a log or an error text.
package relay
