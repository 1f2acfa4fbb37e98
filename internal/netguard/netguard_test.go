package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestKind(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "::ffff:127.0.0.1": "loopback",
		"10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "fd00::1": "private", "100.64.0.1": "private",
		"169.254.169.254": "link-local", "fe80::1%eth0": "link-local",
		"0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "unspecified",
		"224.0.0.1": "link-local", "239.1.2.3": "multicast or broadcast", "255.255.255.255": "multicast or broadcast",
		"93.184.216.34": "", "2606:4700::1111": "",
		// special-purpose ranges, and IPv6 that carries a non-public IPv4
		"192.0.0.8": "reserved", "198.18.0.1": "reserved", "240.0.0.1": "reserved",
		"64:ff9b::a01:203": "private", "64:ff9b::7f00:1": "loopback", "2002:a9fe:a9fe::": "link-local",
		"64:ff9b:1::1": "private", "64:ff9b::5db8:d822": "", "2002:5db8:d822::1": "",
	} {
		if got := Kind(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Kind(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestDialer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err = Dialer(time.Second, false).DialContext(ctx, "tcp", l.Addr().String())
	var refused *Error
	if !errors.As(err, &refused) || refused.Kind != "loopback" || refused.IP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("dial loopback: %v", err)
	}
	if want := "127.0.0.1 is a loopback address"; refused.Error() != want {
		t.Fatalf("message %q, want %q", refused.Error(), want)
	}
	c, err := Dialer(time.Second, true).DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial loopback with private networks allowed: %v", err)
	}
	c.Close()

	if err := Control("tcp", "no-port", nil); !errors.As(err, &refused) || refused.Kind != "" || refused.Error() != `cannot check address "no-port"` {
		t.Fatalf("unparsable address: %v", err)
	}
}
