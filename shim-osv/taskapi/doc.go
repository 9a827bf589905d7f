// Package taskapi is containerd's task API v3 (runtime/task/v3) as messages
// and a ttrpc service and client, without the gRPC service that containerd's
// own package carries (see gen.go). The messages are generated from
// containerd's shim.proto descriptor (Copyright The containerd Authors,
// Apache License 2.0).
package taskapi

//go:generate go run gen.go
