//go:build !race

package ratelimit

const floodKeys = 1_000_000
