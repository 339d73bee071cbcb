package ratelimit

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddress finds the address of the client a request comes from.
type ClientAddress struct {
	// Trusted are the proxies in front of this server whose
	// X-Forwarded-For is believed. Empty: the connection's address is the
	// client's, and X-Forwarded-For is ignored.
	Trusted []netip.Prefix
}

// Of returns the client's address: the connection's peer, unless that is
// a trusted proxy; then the right-most address of X-Forwarded-For that is
// not a trusted proxy. Each proxy appends the address it received the
// request from, so the entries right of the first untrusted one were
// written by trusted proxies, and those left of it by whoever sent it:
// anyone. When every entry is trusted (or there is none), the left-most
// one (or the peer) is returned: the request is the trusted hosts' own,
// which Trusts tells. ok is false when the client cannot be told: the
// peer's address cannot be read (not an IP connection), or a trusted
// proxy wrote an entry that is not an address ("unknown").
func (c ClientAddress) Of(r *http.Request) (addr netip.Addr, ok bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	addr = normalize(ap.Addr())
	if !c.Trusts(addr) {
		return addr, true
	}
	// Several X-Forwarded-For lines are one comma-separated list, in order
	// (RFC 9110, section 5.3).
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		line := hops[i]
		for line != "" {
			entry := line
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				line = ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			hop, ok := parseHop(entry)
			if !ok {
				return netip.Addr{}, false
			}
			addr = hop
			if !c.Trusts(addr) {
				return addr, true
			}
		}
	}
	return addr, true
}

// Trusts reports whether a is one of the trusted proxies.
func (c ClientAddress) Trusts(a netip.Addr) bool {
	for _, p := range c.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one X-Forwarded-For entry: an address, or one with a port
// as a few proxies write it ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), true
	}
	return netip.Addr{}, false
}

// normalize makes one address of the forms of one: an IPv4 address mapped
// into IPv6 is the IPv4 address, and a zone is dropped.
func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// AddressKey is the bucket key of a client address: an IPv4 address
// whole, an IPv6 address by its /64, the block one subscriber is normally
// given (RFC 6177), so that a host cannot draw a fresh bucket from each of
// its addresses.
func AddressKey(a netip.Addr) string {
	a = normalize(a)
	if a.Is4() {
		b := a.As4()
		return string(b[:])
	}
	b := a.As16()
	return string(b[:8])
}
