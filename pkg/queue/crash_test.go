package queue

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/crashtest"
)

const crashMaxLen = 20 << 10

// crashConfig is the queue the child appends to: small segments, so that the
// kill finds segments rolled, acknowledged and removed.
func crashConfig(dir string, sync bool) Config {
	return Config{Dir: dir, SegmentBytes: 256 << 10, Sync: sync}
}

// crashChild is the process TestCrash kills: on the directory args[0], with
// Sync if args[1] is "1", it appends record(base), record(base+1), ... for
// ever (base is args[2]) while one consumer acknowledges them, and prints
// "a i" once Append(record(i)) returned and "k i" once Ack of record i
// returned.
func crashChild(args []string) {
	dir, sync := args[0], args[1] == "1"
	base, err := strconv.Atoi(args[2])
	if err != nil {
		crashtest.Fatalf("%v", err)
	}
	q, err := Open(crashConfig(dir, sync))
	if err != nil {
		crashtest.Fatalf("%v", err)
	}
	go func() {
		for {
			r, err := q.Next(context.Background())
			if err != nil {
				crashtest.Fatalf("%v", err)
			}
			if err := q.Ack(r); err != nil {
				crashtest.Fatalf("%v", err)
			}
			fmt.Fprintf(os.Stdout, "k %d\n", binary.LittleEndian.Uint64(r.Data))
		}
	}()
	for i := base; ; i++ {
		if err := q.Append(record(i, crashMaxLen)); err != nil {
			crashtest.Fatalf("%v", err)
		}
		fmt.Fprintf(os.Stdout, "a %d\n", i)
	}
}

// TestCrash kills a process appending to and consuming from a queue, with
// SIGKILL, at several points, and checks after each that the directory
// holds every record the process said it appended and did not acknowledge,
// in order and intact, and no record it acknowledged but the one in flight.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	base := 0
	rounds := []struct {
		sync bool
		// kill after the child reported this many appends.
		after int
	}{
		{after: 1}, {after: 100}, {after: 2000}, {after: 5000}, {after: 777},
		{sync: true, after: 50}, {sync: true, after: 300},
	}
	for _, round := range rounds {
		a, k := runCrashChild(t, dir, base, round.sync, round.after)
		q, err := Open(crashConfig(dir, false))
		if err != nil {
			t.Fatalf("Open after the kill: %v", err)
		}
		left := q.Len()
		got := drain(t, q, crashMaxLen)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("sync=%v: %d appends reported (last %d), last ack reported %d; %d records left: %v..",
			round.sync, a-base+1, a, k, left, short(got))
		if len(got) == 0 {
			// Everything the child appended was acknowledged, the last
			// append at least by an Ack that may not have been reported.
			if a > k+1 {
				t.Fatalf("records %d to %d were reported appended, not acknowledged, and are lost", k+1, a)
			}
			base = a + 2
			continue
		}
		// Only the record in flight, acknowledged but not reported, may be
		// gone; none reported acknowledged may come again.
		if first := got[0]; first != k+1 && first != k+2 {
			t.Fatalf("first record after the kill is %d, want %d (or %d)", first, k+1, k+2)
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]+1 {
				t.Fatalf("record %d follows %d", got[i], got[i-1])
			}
		}
		// Only the append in flight, not reported, may have made it too.
		if last := got[len(got)-1]; last != a && last != a+1 {
			t.Fatalf("last record after the kill is %d, want %d (or %d)", last, a, a+1)
		}
		base = got[len(got)-1] + 1
	}
}

// runCrashChild starts crashChild on dir and SIGKILLs it once it reported
// after appends. It returns the last append and the last ack reported (base-1
// if none).
func runCrashChild(t *testing.T, dir string, base int, sync bool, after int) (lastAppend, lastAck int) {
	t.Helper()
	syncVal := "0"
	if sync {
		syncVal = "1"
	}
	lastAppend, lastAck = base-1, base-1
	appends := 0
	// What the child prints after the kill was asked for was still true
	// before the kill landed; Run hands it on.
	crashtest.Run(t, 2*time.Minute, "append", []string{dir, syncVal, strconv.Itoa(base)}, func(line string) bool {
		kind, n, ok := strings.Cut(line, " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("child printed %q", line)
		}
		switch kind {
		case "a":
			if i != lastAppend+1 {
				t.Fatalf("child appended %d after %d", i, lastAppend)
			}
			lastAppend = i
			appends++
		case "k":
			if i != lastAck+1 {
				t.Fatalf("child acknowledged %d after %d", i, lastAck)
			}
			lastAck = i
		}
		return appends == after
	})
	return lastAppend, lastAck
}
