package h2rpc

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// serve runs google.golang.org/grpc's server (the one containerd runs) with
// handler answering every method, on a socket of the test's.
func serve(t *testing.T, handler grpc.StreamHandler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "grpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnknownServiceHandler(handler))
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return sock
}

func bytesMsg(t *testing.T, b []byte) []byte {
	t.Helper()
	m, err := proto.Marshal(wrapperspb.Bytes(b))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCall(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 6_000) // over several frames both ways
	sock := serve(t, func(_ any, s grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(s)
		md, _ := metadata.FromIncomingContext(s.Context())
		var req wrapperspb.BytesValue
		if err := s.RecvMsg(&req); err != nil {
			return err
		}
		switch method {
		case "/t.T/Echo":
			// Twice: more than the stream's first window of 64 KiB.
			return s.SendMsg(wrapperspb.Bytes(append([]byte(md.Get("k")[0]+":"), bytes.Repeat(req.Value, 2)...)))
		case "/t.T/Stream":
			for i := range 3 {
				if err := s.SendMsg(wrapperspb.Bytes([]byte{byte('a' + i)})); err != nil {
					return err
				}
			}
			return nil
		case "/t.T/Fail":
			return status.Error(codes.NotFound, "no such thing: 100% gone\nreally")
		case "/t.T/Hang":
			<-s.Context().Done()
			return s.Context().Err()
		}
		return status.Error(codes.Unimplemented, method)
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name, method string
		req          []byte
		want         []string
		code         codes.Code
		msg          string
	}{
		{name: "unary, metadata, large", method: "/t.T/Echo", req: big, want: []string{"v:" + string(big) + string(big)}},
		{name: "server stream", method: "/t.T/Stream", want: []string{"a", "b", "c"}},
		{name: "status", method: "/t.T/Fail", code: codes.NotFound, msg: "no such thing: 100% gone\nreally"},
		{name: "unknown method", method: "/t.T/Nope", code: codes.Unimplemented, msg: "/t.T/Nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := Call(ctx, sock, tc.method, map[string]string{"k": "v"}, bytesMsg(t, tc.req), func(b []byte) error {
				var m wrapperspb.BytesValue
				if err := proto.Unmarshal(b, &m); err != nil {
					return err
				}
				got = append(got, string(m.Value))
				return nil
			})
			if tc.code != codes.OK {
				if s, _ := status.FromError(err); s.Code() != tc.code || s.Message() != tc.msg {
					t.Fatalf("Call: %v, want %v %q", err, tc.code, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("message %d: %.40q…, want %.40q…", i, got[i], tc.want[i])
				}
			}
		})
	}

	t.Run("recv error ends the call", func(t *testing.T) {
		stop := errors.New("enough")
		err := Call(ctx, sock, "/t.T/Stream", nil, nil, func([]byte) error { return stop })
		if !errors.Is(err, stop) {
			t.Fatalf("Call: %v, want %v", err, stop)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := Call(ctx, sock, "/t.T/Hang", nil, nil, func([]byte) error { return nil })
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("Call: %v after %s, want the deadline", err, time.Since(start))
		}
	})
	t.Run("request over the first window", func(t *testing.T) {
		if err := Call(ctx, sock, "/t.T/Echo", nil, make([]byte, 70_000), func([]byte) error { return nil }); err == nil {
			t.Fatal("Call: no error")
		}
	})
	t.Run("no server", func(t *testing.T) {
		if err := Call(ctx, filepath.Join(t.TempDir(), "none"), "/t.T/Echo", nil, nil, func([]byte) error { return nil }); err == nil {
			t.Fatal("Call to no server: no error")
		}
	})
}
