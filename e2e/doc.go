// Package e2e holds the end-to-end tests: the proxy in front of a real
// Phoenix, fed by real apps. They need the build tag e2e and a running
// Phoenix (E2E_PHOENIX_URL); `make e2e` provides both.
package e2e
