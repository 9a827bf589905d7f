// Package harness starts the real components that Feather's end-to-end tests
// need — etcd and the Kubernetes control plane, a containerd daemon, an OCI
// registry — each in its own directory under the test's own temporary tree and
// on free ports on 127.0.0.1.
//
// An Env owns everything it starts. Env.Close (registered with t.Cleanup, and
// safe to call earlier and more than once) stops the components in reverse
// order, then looks for anything still tied to the tree — a process, a mount —
// removes it and reports it as a leak, and finally deletes the tree. So a test
// leaves nothing behind, also when it fails.
//
// The programs come from the repository's _output/bin (built by `make deps`)
// and bin/ (built by `make build`). When one is missing, or the test does not
// run as root, the test is skipped with the reason — unless FEATHER_E2E is
// "required" (as `make test` sets it), when it fails instead.
package harness
