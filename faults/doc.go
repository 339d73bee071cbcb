// Package faults is the fault suite: the proxy binary in front of a real
// Phoenix, fed by the real Python OTLP exporter (load.py), while Phoenix is
// stopped, answers 503, or the proxy is SIGKILLed. Each scenario prints what
// was sent, delivered and lost, and fails when anything is lost.
//
// Run by `make test` (short outages) through scripts/e2e.sh, which starts
// Phoenix; `make faults-long` runs the long version (FAULTS_LONG=1: a 60 s
// Phoenix outage).
package faults
