//go:build race

package ratelimit

// The race detector makes the flood of TestLimiterMemoryBounded ten times
// slower; a fifth of it still shows the bound.
const floodKeys = 200_000
