// Package faults is the fault suite: the proxy binary in front of a real
// Phoenix, run as users run it (no flags but its addresses, so its state is
// in its default data directory, isolated per test through XDG_STATE_HOME),
// fed by the real Python OTLP exporter (load.py), while Phoenix is stopped,
// answers 503, or the proxy is SIGKILLed. Each scenario prints what was
// sent, delivered and lost (FAULTS <scenario>: sent=.. delivered=..
// lost=..), and fails when anything is lost.
//
// The attack suite (TestAttack...) runs the same binary under attacks from
// loopback (slow and stalled clients, idle connections by the thousand,
// decompression bombs, fat bodies, feedback floods, stalled gRPC calls, a
// damaged data directory) while a well-behaved client keeps exporting and
// sending feedback; each case prints what the proxy did and its peak RSS
// (ATTACK <case>: ... peak_rss_mib=<n>) and fails when the well-behaved
// client is refused, the RSS bound (ATTACK_RSS_LIMIT_MIB, 512) is passed,
// or the proxy is not up and ready afterwards.
//
// Run by `make test` (short outages) through scripts/e2e.sh, which starts
// Phoenix; `make faults-long` runs the long version (FAULTS_LONG=1: a 60 s
// Phoenix outage). FAULTS_LOG_DIR keeps the proxy's logs, FAULTS_PROXY_DEBUG=1
// makes them debug.
package faults
