package agent

import (
	"context"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
)

// streamCheck answers exec and attach requests that cannot run (an unknown
// pod or container, one that is not running, an exec into a unikernel) with
// an HTTP error before the stream is upgraded, as kubelet does, so that
// kubectl prints kubelet's words (`error: unable to upgrade connection:
// container not found ("c")`); other requests go to next. check is
// pods.Provider.CheckStream.
func streamCheck(check func(ctx context.Context, namespace, pod, container string, exec bool) error, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, ns, pod, container, ok := streamTarget(r.URL.Path)
		if ok {
			if err := check(r.Context(), ns, pod, container, kind == "exec"); err != nil {
				code := http.StatusInternalServerError
				switch {
				case errdefs.IsNotFound(err):
					code = http.StatusNotFound
				case errdefs.IsNotImplemented(err), errdefs.IsInvalidArgument(err):
					code = http.StatusBadRequest
				}
				http.Error(w, err.Error(), code)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// streamTarget parses /exec/NS/POD/CONTAINER and /attach/NS/POD/CONTAINER
// (virtual-kubelet's routes).
func streamTarget(path string) (kind, ns, pod, container string, ok bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 4 || (parts[0] != "exec" && parts[0] != "attach") {
		return "", "", "", "", false
	}
	for _, p := range parts {
		if p == "" {
			return "", "", "", "", false
		}
	}
	return parts[0], parts[1], parts[2], parts[3], true
}
