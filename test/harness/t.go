package harness

// T is what the harness needs from its caller: the part of testing.TB it
// uses. testing.TB cannot be implemented outside package testing, so taking
// T instead lets programs that are not tests (`make up`) run a cluster with
// the harness too. Every *testing.T and *testing.B is a T.
//
// Fatalf and Skip must not return: testing ends the goroutine, a program
// exits (after running its cleanups). Cleanup functions run last added,
// first called, when the caller is done with the Env.
type T interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
}
