// Package netguard keeps server-side fetches of user-supplied URLs (OpenAPI
// imports, token issuers' JWK Sets and discovery documents) away from
// non-public addresses: loopback, private, link-local, unspecified,
// multicast and broadcast. The check is a net.Dialer Control hook, so it
// runs on the address actually dialed, after name resolution: a DNS answer
// that changes between checks (rebinding) cannot bypass it.
package netguard

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// sharedAddressSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT).
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// reserved are the other special-purpose ranges no public service is on
// (RFC 6890): IETF protocol assignments, benchmarking, and the former
// class E.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Translated IPv6 ranges that carry an IPv4 address, which a gateway
// (NAT64, 6to4) may forward to: their embedded address is checked.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Tail = netip.MustParsePrefix("64:ff9b:1::/48") // local-use NAT64 (RFC 8215)
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Kind names the kind of a non-public address — "loopback", "private",
// "link-local", "unspecified", "multicast or broadcast" or "reserved" — or
// returns "" for a public one. An IPv6 address that carries an IPv4 one
// (NAT64 64:ff9b::/96, 6to4 2002::/16) is the kind of its IPv4 address.
func Kind(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if v4, ok := embeddedIPv4(ip); ok {
		if k := Kind(v4); k != "" {
			return k
		}
	}
	if nat64Tail.Contains(ip) {
		return "private" // local-use NAT64 reaches only local networks
	}
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate(), sharedAddressSpace.Contains(ip):
		return "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsUnspecified(), ip.Is4() && ip.As4()[0] == 0:
		return "unspecified"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "multicast or broadcast"
	}
	for _, p := range reserved {
		if p.Contains(ip) {
			return "reserved"
		}
	}
	return ""
}

// embeddedIPv4 is the IPv4 address a NAT64 or 6to4 address carries.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// Error is a dial refused by Control: the address is not public (Kind is
// set) or could not be checked (Kind is "").
type Error struct {
	// Address is the address dialed (host:port).
	Address string
	// IP is the address's IP, when it could be parsed.
	IP netip.Addr
	// Kind is what Kind returned for IP.
	Kind string
}

func (e *Error) Error() string {
	if e.Kind == "" {
		return fmt.Sprintf("cannot check address %q", e.Address)
	}
	return fmt.Sprintf("%s is a %s address", e.IP, e.Kind)
}

// Control is a net.Dialer Control hook that refuses non-public addresses
// with an *Error.
func Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return &Error{Address: address}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return &Error{Address: address}
	}
	if kind := Kind(ip); kind != "" {
		return &Error{Address: address, IP: ip, Kind: kind}
	}
	return nil
}

// Dialer returns a dialer with the given connect timeout that refuses
// non-public addresses unless allowPrivate is set.
func Dialer(timeout time.Duration, allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = Control
	}
	return d
}
