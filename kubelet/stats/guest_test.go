package stats

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestResidentOfSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		size uint64
		want uint64
	}{
		{"the guest's RAM", 128 << 20, 106496 << 10},
		{"no mapping of that size", 64 << 20, 0},
		{"TCG's code buffer", 1 << 30, 20480 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open("testdata/smaps")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := residentOfSize(f, tc.size)
			if err != nil || got != tc.want {
				t.Errorf("residentOfSize = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// fakeMonitor serves QMP on a unix socket in a temp dir: the greeting
// (unless silent), then replies from answers by command name.
func fakeMonitor(t *testing.T, silent bool, answers map[string]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp-stats.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if silent {
					_, _ = io.Copy(io.Discard, conn) // a hung QEMU: connected, never greets
					return
				}
				_, _ = conn.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					var req struct {
						Execute string          `json:"execute"`
						ID      json.RawMessage `json:"id"`
					}
					if json.Unmarshal(sc.Bytes(), &req) != nil {
						return
					}
					reply, ok := answers[req.Execute]
					if !ok {
						reply = `"return": {}`
					}
					_, _ = conn.Write([]byte(`{` + reply + `, "id": ` + string(req.ID) + "}\n"))
				}
			}()
		}
	}()
	return sock
}

func TestQueryGuest(t *testing.T) {
	smaps := func() (io.ReadCloser, error) { return os.Open("testdata/smaps") }
	size := `"return": {"base-memory": 134217728, "plugged-memory": 0}`
	for _, tc := range []struct {
		name    string
		silent  bool
		answers map[string]string
		want    GuestMemory
		wantErr bool
	}{
		{name: "balloon without a guest driver", answers: map[string]string{"query-memory-size-summary": size,
			"query-balloon": `"return": {"actual": 134217728}`}, want: GuestMemory{Bytes: 128 << 20, Touched: 106496 << 10}},
		{name: "balloon inflated", answers: map[string]string{"query-memory-size-summary": size,
			"query-balloon": `"return": {"actual": 100663296}`}, want: GuestMemory{Bytes: 96 << 20, Touched: 106496 << 10}},
		{name: "no balloon device", answers: map[string]string{"query-memory-size-summary": size,
			"query-balloon": `"error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}`},
			want: GuestMemory{Bytes: 128 << 20, Touched: 106496 << 10}},
		{name: "balloon fails", answers: map[string]string{"query-memory-size-summary": size,
			"query-balloon": `"error": {"class": "GenericError", "desc": "broken"}`}, wantErr: true},
		{name: "monitor does not answer", silent: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := fakeMonitor(t, tc.silent, tc.answers)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			got, err := queryGuest(ctx, sock, smaps)
			if (err != nil) != tc.wantErr {
				t.Fatalf("queryGuest = %+v, %v; want error %v", got, err, tc.wantErr)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("queryGuest took %v with a 300 ms deadline", d)
			}
			if tc.silent && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("silent monitor: %v, want the deadline", err)
			}
			if got != tc.want {
				t.Errorf("queryGuest = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestGuestUserDefined(t *testing.T) {
	m := GuestMemory{Bytes: 128 << 20, Touched: 40 << 20}.userDefined(metav1Time())
	if len(m) != 2 || m[0].Name != MetricGuestMemory || m[0].Value != 128<<20 || m[1].Name != MetricGuestTouched ||
		m[1].Value != 40<<20 || m[0].Type != "gauge" || m[1].Units != "bytes" {
		t.Errorf("userDefined = %+v", m)
	}
	if m := (GuestMemory{Bytes: 1}).userDefined(metav1Time()); len(m) != 1 {
		t.Errorf("without touched pages: %+v, want the RAM only", m)
	}
}

func metav1Time() metav1.Time { return metav1.NewTime(time.Unix(2000, 0)) }
