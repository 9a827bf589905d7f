package stats

import (
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

func mustAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    any
		want    usage
		wantErr bool
	}{
		{name: "cgroup v1", data: &v1.Metrics{
			CPU:    &v1.CPUStat{Usage: &v1.CPUUsage{Total: 5e9}},
			Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 100 << 20, Limit: 9223372036854771712}, TotalInactiveFile: 10 << 20, TotalRSS: 80 << 20, TotalPgFault: 7, TotalPgMajFault: 1},
			Pids:   &v1.PidsStat{Current: 3},
		}, want: usage{cpuNs: 5e9, mem: 100 << 20, workingSet: 90 << 20, rss: 80 << 20, pageFaults: 7, majorFaults: 1, pids: 3}},
		{name: "cgroup v1 with a limit", data: &v1.Metrics{
			Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 1 << 20, Limit: 64 << 20}, TotalInactiveFile: 2 << 20},
		}, want: usage{mem: 1 << 20, limit: 64 << 20}},
		{name: "cgroup v2", data: &v2.Metrics{
			CPU:    &v2.CPUStat{UsageUsec: 1500},
			Memory: &v2.MemoryStat{Usage: 50 << 20, UsageLimit: ^uint64(0), InactiveFile: 5 << 20, Anon: 40 << 20, Pgfault: 9, Pgmajfault: 2},
			Pids:   &v2.PidsStat{Current: 2},
		}, want: usage{cpuNs: 1.5e6, mem: 50 << 20, workingSet: 45 << 20, rss: 40 << 20, pageFaults: 9, majorFaults: 2, pids: 2}},
		{name: "empty v2", data: &v2.Metrics{}, want: usage{}},
		{name: "not cgroup metrics", data: &emptypb.Empty{}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode(mustAny(t, tc.data))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := decode(nil); err == nil {
		t.Error("nil metrics decoded")
	}
}
