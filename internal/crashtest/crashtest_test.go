package crashtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The children below are this binary run again by the tests; goleak checks
// that a Run, failed or not, leaves no goroutine reading a dead child.
func TestMain(m *testing.M) {
	Main(map[string]Child{
		"count": countChild,
		"echo":  echoChild,
		"exit":  exitChild,
		"term":  termChild,
	})
	goleak.VerifyTestMain(m)
}

// countChild prints its pid, then 0, 1, 2, ... until it is killed.
func countChild([]string) {
	fmt.Printf("pid %d\n", os.Getpid())
	for i := 0; ; i++ {
		fmt.Printf("%d\n", i)
	}
}

// echoChild prints its arguments, one a line, then "end", all in one write,
// and waits to be killed.
func echoChild(args []string) {
	if _, err := os.Stdout.WriteString(strings.Join(append(args, "end"), "\n") + "\n"); err != nil {
		Fatalf("%v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// exitChild prints its pid and ends on its own: by returning for "0", by
// Fatalf otherwise.
func exitChild(args []string) {
	fmt.Printf("pid %d\n", os.Getpid())
	if args[0] != "0" {
		Fatalf("told to fail")
	}
}

// termChild dies of SIGTERM, which is not the kill Run sends.
func termChild([]string) {
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		Fatalf("%v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// recorder is a testing.TB whose Fatal ends the goroutine, as t.Fatal does,
// and keeps the message, so that a test can check Run fails when it should.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Fatal(args ...any) { r.fail(fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }

func (r *recorder) fail(msg string) {
	r.failed = msg
	runtime.Goexit()
}

// runFailing runs Run with a recorder over t and returns how it failed, ""
// if it did not.
func runFailing(t testing.TB, timeout time.Duration, name string, args []string, onLine func(string) bool) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(r, timeout, name, args, onLine)
	}()
	<-done
	return r.failed
}

// pidOf returns the pid in a "pid N" line, or 0.
func pidOf(line string) int {
	n, ok := strings.CutPrefix(line, "pid ")
	if !ok {
		return 0
	}
	pid, _ := strconv.Atoi(n)
	return pid
}

// gone reports whether the process pid has been reaped.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestRunKillsMidStream: the child is killed while it prints as fast as it
// can, and every line it printed comes, in order, the lines after the one
// that asked for the kill included.
func TestRunKillsMidStream(t *testing.T) {
	const killAt = 500
	var got []int
	pid := 0
	Run(t, time.Minute, "count", nil, func(line string) bool {
		if p := pidOf(line); p != 0 {
			pid = p
			return false
		}
		i, err := strconv.Atoi(line)
		if err != nil || i != len(got) {
			t.Fatalf("line %q after %d numbers", line, len(got))
		}
		got = append(got, i)
		return i == killAt
	})
	if len(got) <= killAt {
		t.Fatalf("%d numbers, want more than %d", len(got), killAt)
	}
	if pid == 0 || !gone(pid) {
		t.Errorf("child pid %d is not reaped after Run", pid)
	}
	t.Logf("killed at %d, %d lines read", killAt, len(got))
}

// TestRunArgs: the child gets its arguments as they were given.
func TestRunArgs(t *testing.T) {
	args := []string{"/tmp/a dir/with spaces", "", `{"json":"a=b"}`, "ünïcode", "-test.run=x"}
	var got []string
	Run(t, time.Minute, "echo", args, func(line string) bool {
		if line == "end" {
			return true
		}
		got = append(got, line)
		return false
	})
	if !slices.Equal(got, args) {
		t.Errorf("child got %q, want %q", got, args)
	}
}

// TestRunLinesAfterKill: lines the child printed before the kill landed go
// to onLine after the one that asked for the kill. The child prints them
// all in one write, before the kill is asked for.
func TestRunLinesAfterKill(t *testing.T) {
	var args []string
	for i := range 1000 {
		args = append(args, strconv.Itoa(i))
	}
	var got []string
	Run(t, time.Minute, "echo", args, func(line string) bool {
		got = append(got, line)
		return line == "10"
	})
	if want := append(args, "end"); !slices.Equal(got, want) {
		t.Errorf("onLine got %d lines, want %d: %q..", len(got), len(want), got[:min(len(got), 20)])
	}
}

// TestRunChildEnds: a child that ends before the kill, on its own or
// failing, fails the Run, with what it printed on standard error.
func TestRunChildEnds(t *testing.T) {
	for _, tc := range []struct{ code, want string }{
		{"0", "before the kill: <nil>"},
		{"2", "before the kill: exit status 2\ncrash child: told to fail"},
	} {
		pid := 0
		failed := runFailing(t, time.Minute, "exit", []string{tc.code}, func(line string) bool {
			pid = pidOf(line)
			return false
		})
		if !strings.Contains(failed, tc.want) {
			t.Errorf("child exiting %s: Run failed with %q, want %q", tc.code, failed, tc.want)
		}
		if pid == 0 || !gone(pid) {
			t.Errorf("child exiting %s: pid %d not reaped", tc.code, pid)
		}
	}
}

// TestRunTimeout: a child never told to die is killed at the timeout, and
// the Run fails.
func TestRunTimeout(t *testing.T) {
	pid := 0
	failed := runFailing(t, 300*time.Millisecond, "count", nil, func(line string) bool {
		if p := pidOf(line); p != 0 {
			pid = p
		}
		return false
	})
	if !strings.Contains(failed, "not killed within 300ms") {
		t.Errorf("Run failed with %q, want not killed within 300ms", failed)
	}
	if pid == 0 || !gone(pid) {
		t.Errorf("child pid %d not reaped after the timeout", pid)
	}
}

// TestRunTestFails: when the test fails in onLine, the child is killed and
// reaped as the test ends, not left printing.
func TestRunTestFails(t *testing.T) {
	pid := 0
	t.Run("failing", func(t *testing.T) {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Run(r, time.Minute, "count", nil, func(line string) bool {
				if p := pidOf(line); p != 0 {
					pid = p
				}
				if line == "10" {
					r.Fatalf("a check failed") // as t.Fatalf would
				}
				return false
			})
		}()
		<-done
		if r.failed != "a check failed" {
			t.Fatalf("Run went on after onLine failed: %q", r.failed)
		}
		if pid == 0 || gone(pid) {
			t.Fatalf("child pid %d reaped before the test ended", pid)
		}
	})
	if pid == 0 || !gone(pid) {
		t.Errorf("child pid %d not reaped after the test failed", pid)
	}
}

// TestRunUnregisteredChild: a name Main was not given fails the Run, saying
// so.
func TestRunUnregisteredChild(t *testing.T) {
	failed := runFailing(t, time.Minute, "nobody", nil, func(string) bool { return false })
	if !strings.Contains(failed, `no child "nobody"`) {
		t.Errorf("Run failed with %q", failed)
	}
}

// TestDiedOfKill: only death by SIGKILL counts as killed: not an exit,
// failed or not, nor another signal.
func TestDiedOfKill(t *testing.T) {
	wait := func(name, arg string, kill bool) error {
		env, err := json.Marshal(call{Name: name, Args: []string{arg}})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(env))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if kill {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		return cmd.Wait()
	}
	for _, tc := range []struct {
		what string
		err  error
		want bool
	}{
		{"SIGKILL", wait("echo", "", true), true},
		{"exit 0", wait("exit", "0", false), false},
		{"exit 2", wait("exit", "2", false), false},
		{"SIGTERM", wait("term", "", false), false},
		{"not an exit", errors.New("signal: killed"), false},
	} {
		if got := diedOfKill(tc.err); got != tc.want {
			t.Errorf("%s (%v): diedOfKill = %v, want %v", tc.what, tc.err, got, tc.want)
		}
	}
}
