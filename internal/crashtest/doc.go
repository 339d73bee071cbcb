// Package crashtest kills a test's own binary with SIGKILL, for tests of
// what a process leaves on disk when it dies mid-write.
//
// The test binary is the child: Run starts it again with an environment
// variable naming a child function and its arguments, and the package's
// TestMain hands control to that function by calling Main first. The child
// reports progress by printing lines on its standard output, one write a
// line, so that a line the parent read was true before the kill landed. Run
// hands the parent every line, kills the child the first time the parent
// says so, hands on the lines the child printed before it died, and fails
// the test unless the child died of the kill.
//
// A package that has crash tests wires it up once:
//
//	func TestMain(m *testing.M) {
//		crashtest.Main(map[string]crashtest.Child{"append": appendChild})
//		goleak.VerifyTestMain(m)
//	}
//
// and a test kills the child once it printed what the test waited for:
//
//	crashtest.Run(t, time.Minute, "append", []string{dir}, func(line string) bool {
//		return line == "a 100"
//	})
//
// The child runs before any test and before the testing package parses its
// flags: it has no *testing.T, and reports a failure with Fatalf, which
// exits with status 2 (the parent then fails: the child ended, or died of
// something other than the kill).
package crashtest
