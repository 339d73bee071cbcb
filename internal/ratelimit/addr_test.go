package ratelimit

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddress(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string // X-Forwarded-For lines
		want    string   // "" for not ok
	}{
		{"the peer when nothing is trusted", nil, "203.0.113.7:4711", []string{"198.51.100.1"}, "203.0.113.7"},
		{"an untrusted peer's X-Forwarded-For is ignored", trusted, "203.0.113.7:4711", []string{"198.51.100.1"}, "203.0.113.7"},
		{"a trusted peer without X-Forwarded-For", trusted, "127.0.0.1:4711", nil, "127.0.0.1"},
		{"a trusted peer: the right-most entry", trusted, "127.0.0.1:4711", []string{"198.51.100.1"}, "198.51.100.1"},
		{"what the client wrote itself, left, is skipped", trusted, "127.0.0.1:4711", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"trusted hops are walked past", trusted, "127.0.0.1:4711", []string{"1.1.1.1, 198.51.100.1, 10.0.0.2, 10.0.0.3"}, "198.51.100.1"},
		{"lines are one list, in order", trusted, "127.0.0.1:4711", []string{"1.1.1.1, 198.51.100.1", "10.0.0.2 ,10.0.0.3"}, "198.51.100.1"},
		{"every hop trusted: the left-most", trusted, "127.0.0.1:4711", []string{"10.0.0.9, 10.0.0.2"}, "10.0.0.9"},
		{"an unreadable entry: the client cannot be told", trusted, "127.0.0.1:4711", []string{"198.51.100.1, unknown, 10.0.0.2"}, ""},
		{"an unreadable entry left of the client does not matter", trusted, "127.0.0.1:4711", []string{"unknown, 198.51.100.1, 10.0.0.2"}, "198.51.100.1"},
		{"empty entries are skipped", trusted, "127.0.0.1:4711", []string{"198.51.100.1,, ", ""}, "198.51.100.1"},
		{"entries with ports", trusted, "127.0.0.1:4711", []string{"198.51.100.1:1234"}, "198.51.100.1"},
		{"IPv6 entries with ports", trusted, "[::1]:4711", []string{"[2001:db8::7]:1234"}, "2001:db8::7"},
		{"an IPv4-mapped peer is IPv4", trusted, "[::ffff:127.0.0.1]:4711", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"a zone is dropped", nil, "[fe80::1%eth0]:4711", nil, "fe80::1"},
		{"not an IP connection", trusted, "@", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, ok := ClientAddress{Trusted: tc.trusted}.Of(r)
			if tc.want == "" {
				if ok {
					t.Fatalf("Of = %v, want not ok", got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("Of = %v (ok %v), want %s", got, ok, tc.want)
			}
		})
	}
}

// A trusted proxy's own request is one without X-Forwarded-For: a header
// of trusted hops only may be the client's own, passed on.
func TestFromTrustedProxy(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string // X-Forwarded-For lines; nil: no header
		want    bool
	}{
		{"a trusted peer without X-Forwarded-For", trusted, "127.0.0.1:4711", nil, true},
		{"a trusted IPv6 peer", trusted, "[::1]:4711", nil, true},
		{"an IPv4-mapped trusted peer", trusted, "[::ffff:127.0.0.1]:4711", nil, true},
		{"an untrusted peer", trusted, "203.0.113.7:4711", nil, false},
		{"nothing trusted", nil, "127.0.0.1:4711", nil, false},
		{"trusted hops only", trusted, "127.0.0.1:4711", []string{"127.0.0.1"}, false},
		{"an empty X-Forwarded-For", trusted, "127.0.0.1:4711", []string{""}, false},
		{"a client named", trusted, "127.0.0.1:4711", []string{"198.51.100.1"}, false},
		{"not an IP connection", trusted, "@", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := (ClientAddress{Trusted: tc.trusted}).FromTrustedProxy(r); got != tc.want {
				t.Fatalf("FromTrustedProxy = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAddressKey(t *testing.T) {
	key := func(s string) string { return AddressKey(netip.MustParseAddr(s)) }
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"one IPv4 address", "198.51.100.1", "198.51.100.1", true},
		{"two IPv4 addresses", "198.51.100.1", "198.51.100.2", false},
		{"IPv4-mapped is IPv4", "198.51.100.1", "::ffff:198.51.100.1", true},
		{"one IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"two IPv6 /64s", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv4 is not the IPv6 prefix of its bytes", "32.1.13.184", "2001:db8::", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := key(tc.a) == key(tc.b); got != tc.same {
				t.Fatalf("same key = %v, want %v", got, tc.same)
			}
		})
	}
	if n := len(key("2001:db8::1")); n != 8 {
		t.Errorf("an IPv6 key is %d bytes, want 8", n)
	}
}
