package agent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProfilingHandlers(t *testing.T) {
	mux := http.NewServeMux()
	profilingHandlers(mux)
	for _, tc := range []struct {
		path, want string
	}{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
		{"/debug/pprof/cmdline", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("GET %s: %d, %.200q", tc.path, w.Code, w.Body.String())
			}
		})
	}
}
