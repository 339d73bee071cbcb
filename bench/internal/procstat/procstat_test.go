package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	stat := []byte("4242 (otelcol (bench)) S 1 4242 4242 0 -1 4194560 5821 0 0 0 1234 56 0 0 20 0 12 0 99 1 2 3\n")
	cpu, err := parseStat(stat)
	if err != nil || cpu != 12900*time.Millisecond {
		t.Errorf("parseStat = %v, %v; want 12.9s", cpu, err)
	}
	if _, err := parseStat([]byte("4242 (x) S 1")); err == nil {
		t.Error("parseStat of a short line: no error")
	}
	mem, err := parseStatus([]byte("Name:\tproxy\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"))
	if err != nil || mem.Peak != 200<<20 || mem.Now != 100<<20 {
		t.Errorf("parseStatus = %+v, %v", mem, err)
	}
}

func TestSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	if _, err := CPU(os.Getpid()); err != nil {
		t.Error(err)
	}
	if m, err := Mem(os.Getpid()); err != nil || m.Peak <= 0 {
		t.Errorf("Mem = %+v, %v", m, err)
	}
}
