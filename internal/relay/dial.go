package relay

import (
	"fmt"
	"net/netip"
	"syscall"
)

// refusedAddr is the address guard's refusal; transportError finds it in
// the chain of the client's error.
type refusedAddr struct{ what string }

func (e *refusedAddr) Error() string { return "relay: refusing to connect to " + e.what }

// Ranges refused whatever the standard library calls them: shared address
// space (RFC 6598, carrier-grade NAT), "this network" (RFC 791), benchmarking
// (RFC 2544), and IPv4-mapped/NAT64 forms are unmapped before the checks.
var extraRefused = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// addressGuard decides, for every connection the relay's HTTP client makes,
// whether its address may be dialled. It runs in net.Dialer.Control, after
// name resolution and right before connect(2), on the very address the
// socket connects to: a name that resolves to a public address when checked
// and a private one when dialled (DNS rebinding) is caught, because there
// is no separate check.
type addressGuard struct {
	allow []netip.Prefix
}

func (g addressGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &refusedAddr{what: "an address that cannot be checked"}
	}
	return g.check(ap.Addr())
}

// check refuses a non-public address unless the allow-list has it.
func (g addressGuard) check(a netip.Addr) error {
	a = a.Unmap()
	for _, p := range g.allow {
		if p.Contains(a) {
			return nil
		}
	}
	what := ""
	switch {
	case a.IsLoopback():
		what = "a loopback address"
	case a.IsPrivate():
		what = "a private address"
	case a.IsLinkLocalUnicast():
		what = "a link-local address"
	case a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast():
		what = "a multicast address"
	case a.IsUnspecified():
		what = "the unspecified address"
	case !a.IsGlobalUnicast():
		what = "a non-unicast address"
	}
	for _, p := range extraRefused {
		if what == "" && p.Contains(a) {
			what = fmt.Sprintf("an address in the reserved range %s", p)
		}
	}
	if what == "" {
		return nil
	}
	return &refusedAddr{what: what}
}
