// Package taskapi is containerd's task API v3 (runtime/task/v3) as messages
// and a ttrpc service and client, without the gRPC service that containerd's
// own package carries (see gen.go).
package taskapi

//go:generate go run gen.go
