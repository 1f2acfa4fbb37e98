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

// Kind names the kind of a non-public address — "loopback", "private",
// "link-local", "unspecified" or "multicast or broadcast" — or returns ""
// for a public one.
func Kind(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
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
	return ""
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
