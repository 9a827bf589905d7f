package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestStreamCheck(t *testing.T) {
	check := func(_ context.Context, ns, pod, container string, exec bool) error {
		switch {
		case pod == "gone":
			return errdefs.ErrNotFound.WithMessage("pod does not exist")
		case container == "exited":
			return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("container not found (%q)", container))
		case container == "uk" && exec:
			return errdefs.ErrNotImplemented.WithMessage("cannot exec in a unikernel")
		}
		return nil
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := streamCheck(check, next)
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/exec/default/web/c?command=sh", http.StatusTeapot, ""},
		{"/exec/default/gone/c", http.StatusNotFound, "pod does not exist"},
		{"/exec/default/web/exited", http.StatusNotFound, `container not found ("exited")`},
		{"/attach/default/web/exited", http.StatusNotFound, `container not found ("exited")`},
		{"/exec/default/web/uk", http.StatusBadRequest, "cannot exec in a unikernel"},
		{"/attach/default/web/uk", http.StatusTeapot, ""},
		{"/containerLogs/default/gone/c", http.StatusTeapot, ""},
		{"/portForward/default/gone", http.StatusTeapot, ""},
		{"/exec/default/gone", http.StatusTeapot, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tc.path, nil))
		if rec.Code != tc.code || strings.TrimSpace(rec.Body.String()) != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}
