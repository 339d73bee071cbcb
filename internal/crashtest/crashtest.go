package crashtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// childEnv, set, makes the test binary the child of a Run: it holds the
// child's name and arguments, JSON-encoded, so that any string reaches the
// child as it was given.
const childEnv = "CRASHTEST_CHILD"

// call is what a Run passes its child in childEnv.
type call struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// Child is the body of a child process: it is given the arguments its Run
// passed, and runs until it is killed. Returning ends the process with
// status 0, which fails the Run that started it.
type Child func(args []string)

// Main, called first in TestMain, runs the child named in the environment
// and exits, when this process is the child of a Run; otherwise it returns
// at once and TestMain goes on to run the tests.
func Main(children map[string]Child) {
	v, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	var c call
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		Fatalf("%s=%q: %v", childEnv, v, err)
	}
	child, ok := children[c.Name]
	if !ok {
		Fatalf("no child %q (TestMain passes Main the children it has)", c.Name)
	}
	child(c.Args)
	os.Exit(0)
}

// Fatalf, in a child, prints the failure on standard error (the parent
// shows it) and exits with status 2.
func Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "crash child: "+format+"\n", args...)
	os.Exit(2)
}

// Run starts the test binary again as the child registered under name in
// Main, with args, and gives onLine every line the child prints on its
// standard output, in order, on the test's goroutine. The first time onLine
// returns true Run kills the child with SIGKILL; the lines the child printed
// before the kill landed still go to onLine (its answer no longer counts),
// as they were true when the child died. Run returns once the child is dead
// and its output read.
//
// Run fails t if the child ended before the kill, died of anything but the
// kill, or was not told to die within timeout (it is killed then). When t
// fails inside onLine, the child is killed and reaped as the test ends.
func Run(t testing.TB, timeout time.Duration, name string, args []string, onLine func(line string) (kill bool)) {
	t.Helper()
	env, err := json.Marshal(call{Name: name, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	// No test runs in the child: it would only run them if TestMain did
	// not call Main, and then it ends at once, which Run reports.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(env))
	// Read only after Wait: exec copies into it from a goroutine of its own.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waited := false
	wait := func() error {
		waited = true
		for range lines { // the pipe must be read to its end before Wait
		}
		return cmd.Wait()
	}
	t.Cleanup(func() {
		if !waited { // t failed before the child was reaped
			_ = cmd.Process.Kill()
			_ = wait()
		}
	})

	n, killed := 0, false
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	expired := timer.C
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := wait()
				if !killed {
					t.Fatalf("crash child %s ended after %d lines, before the kill: %v\n%s", name, n, err, stderr.String())
				}
				if !diedOfKill(err) {
					t.Fatalf("crash child %s: %v, want killed\n%s", name, err, stderr.String())
				}
				return
			}
			n++
			if onLine(line) && !killed {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed, expired = true, nil
			}
		case <-expired:
			_ = cmd.Process.Kill()
			err := wait()
			t.Fatalf("crash child %s: not killed within %v, after %d lines: %v\n%s", name, timeout, n, err, stderr.String())
		}
	}
}

// diedOfKill reports whether err, from Wait, says the process died of
// SIGKILL.
func diedOfKill(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
