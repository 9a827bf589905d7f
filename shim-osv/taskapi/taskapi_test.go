package taskapi_test

import (
	"testing"

	ctrdtask "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/feather-edge/feather/shim-osv/taskapi"
)

// TestWireCompatible: every message has containerd's fields (number, name,
// kind), and a message marshalled by one package reads the same in the
// other.
func TestWireCompatible(t *testing.T) {
	ours := taskapi.File_shim_osv_taskapi_shim_proto.Messages()
	theirs := ctrdtask.File_runtime_task_v3_shim_proto.Messages()
	if ours.Len() != theirs.Len() {
		t.Fatalf("%d messages, containerd has %d", ours.Len(), theirs.Len())
	}
	var check func(a, b protoreflect.MessageDescriptor)
	check = func(a, b protoreflect.MessageDescriptor) {
		if a.Name() != b.Name() || a.Fields().Len() != b.Fields().Len() {
			t.Errorf("message %s (%d fields), containerd's %s (%d)", a.Name(), a.Fields().Len(), b.Name(), b.Fields().Len())
			return
		}
		for i := 0; i < a.Fields().Len(); i++ {
			fa, fb := a.Fields().Get(i), b.Fields().Get(i)
			if fa.Number() != fb.Number() || fa.Name() != fb.Name() || fa.Kind() != fb.Kind() || fa.Cardinality() != fb.Cardinality() {
				t.Errorf("%s.%s: %d %v %v, containerd's %d %v %v", a.Name(), fa.Name(), fa.Number(), fa.Kind(), fa.Cardinality(),
					fb.Number(), fb.Kind(), fb.Cardinality())
			}
			if fa.Message() != nil && fb.Message() != nil && fa.Message().ParentFile() == a.ParentFile() {
				check(fa.Message(), fb.Message())
			}
		}
	}
	for i := 0; i < ours.Len(); i++ {
		check(ours.Get(i), theirs.Get(i))
	}
	opts, err := anypb.New(timestamppb.Now())
	if err != nil {
		t.Fatal(err)
	}
	in := &taskapi.CreateTaskRequest{ID: "c1", Bundle: "/b", Rootfs: []*types.Mount{{Type: "overlay", Source: "s", Options: []string{"ro"}}},
		Stdout: "/o", Options: opts}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var theirsReq ctrdtask.CreateTaskRequest
	if err := proto.Unmarshal(b, &theirsReq); err != nil {
		t.Fatal(err)
	}
	if theirsReq.ID != "c1" || theirsReq.Bundle != "/b" || len(theirsReq.Rootfs) != 1 || theirsReq.Rootfs[0].Options[0] != "ro" ||
		theirsReq.Stdout != "/o" || !proto.Equal(theirsReq.Options, opts) {
		t.Errorf("containerd reads %v", &theirsReq)
	}
	resp, err := proto.Marshal(&ctrdtask.StateResponse{ID: "c1", ExecID: "e", Pid: 7, ExitStatus: 3})
	if err != nil {
		t.Fatal(err)
	}
	var state taskapi.StateResponse
	if err := proto.Unmarshal(resp, &state); err != nil {
		t.Fatal(err)
	}
	if state.ID != "c1" || state.ExecID != "e" || state.Pid != 7 || state.ExitStatus != 3 {
		t.Errorf("read %v", &state)
	}
}
