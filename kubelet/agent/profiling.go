package agent

import (
	"net/http"
	"net/http/pprof"
)

// profilingHandlers serves Go's profiles on mux at /debug/pprof/, as
// kubelet's enableProfilingHandler: the index and named profiles (heap,
// goroutine, …), cmdline, a CPU profile (profile?seconds=N), symbol and an
// execution trace. The kubelet API's authorisation checks them as
// nodes/proxy.
func profilingHandlers(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
