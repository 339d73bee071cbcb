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
// one (or the peer) is returned. That is no proof that a trusted host sent
// the request: a trusted proxy that passes the client's X-Forwarded-For on
// as it came, rather than appending to it, lets the client write any
// entry, trusted ones too. Only FromTrustedProxy tells a trusted proxy's
// own request. ok is false when the client cannot be told: the peer's
// address cannot be read (not an IP connection), or a trusted proxy wrote
// an entry that is not an address ("unknown").
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

// FromTrustedProxy reports whether r is a trusted proxy's own request: its
// peer is trusted and it carries no X-Forwarded-For header at all, so it
// passes on no one else's. A request whose X-Forwarded-For names trusted
// hosts only is not: a client can write that header, and a trusted proxy
// that does not append to it (or overwrite it) passes it on.
func (c ClientAddress) FromTrustedProxy(r *http.Request) bool {
	if _, ok := r.Header["X-Forwarded-For"]; ok {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && c.Trusts(normalize(ap.Addr()))
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

// NetworkKey is the bucket key of a client address's network: an IPv4
// address by its /24, an IPv6 address by its /48 (a site's usual
// allocation). A client that draws addresses from its block, a fresh /64
// (of the 65,536 in a /48) for every request, meets one bucket here.
func NetworkKey(a netip.Addr) string {
	a = normalize(a)
	if a.Is4() {
		b := a.As4()
		return string(b[:3])
	}
	b := a.As16()
	return string(b[:6])
}

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
