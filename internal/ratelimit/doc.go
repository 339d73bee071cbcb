// Package ratelimit limits the rate of requests per key, a client address or
// a credential, with a token bucket per key (golang.org/x/time/rate), and
// answers the requests past it 429 with Retry-After.
//
// The buckets are kept in an LRU of a fixed number of keys
// (hashicorp/golang-lru/v2), so that a flood of distinct addresses or made-up
// keys costs a bounded amount of memory: past MaxKeys, the bucket used least
// recently is forgotten. A forgotten bucket that was not yet full again
// gives its key a fresh burst when it comes back; so MaxKeys should exceed
// the keys active within Burst/Rate seconds (the time a bucket takes to
// refill), which for the defaults of cmd/proxy is a few seconds.
//
// Key a request by its client address with ClientAddress and AddressKey
// (IPv6 by /64, the block a single subscriber is normally given, so that
// one host cannot draw a fresh bucket from each of its 2^64 addresses).
// Key by a credential only once it has been verified, or every made-up
// credential draws a fresh bucket.
package ratelimit
