// Package registrytest is an in-memory OCI registry for tests: the parts of
// the distribution API that pushes and pulls use, with optional Basic
// authentication and a fault that cuts blob downloads short.
package registrytest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Registry is a running test registry. Its fields may be changed while it
// runs, under no lock: tests set them between requests.
type Registry struct {
	*httptest.Server
	// Host is host:port, for references and --plain-http.
	Host string
	// User and Password, when User is set, are required as Basic
	// credentials; a request without them gets 401 and a challenge.
	User, Password string
	// Cut, when > 0, makes each blob GET send at most Cut bytes, then drop
	// the connection, as a failing network does.
	Cut int64
	// FailRanged makes every blob GET with a Range header fail with 503.
	FailRanged bool

	mu        sync.Mutex
	blobs     map[digest.Digest][]byte
	manifests map[string]manifest // "repo@digest" and "repo:tag"
	uploads   map[string]*bytes.Buffer
	log       []string
}

type manifest struct {
	mediaType string
	b         []byte
}

// Start starts a registry; t's cleanup (pass t.Cleanup) stops it.
func Start(cleanup func(func())) *Registry {
	r := &Registry{blobs: map[digest.Digest][]byte{}, manifests: map[string]manifest{}, uploads: map[string]*bytes.Buffer{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	r.Host = strings.TrimPrefix(r.URL, "http://")
	cleanup(r.Close)
	return r
}

// Requests returns "METHOD PATH [Range]" of every request so far.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// Blob returns a stored blob.
func (r *Registry) Blob(d digest.Digest) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.blobs[d]
	return b, ok
}

var (
	blobRE     = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)
	uploadRE   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([0-9a-f]*)$`)
	manifestRE = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.log = append(r.log, strings.TrimSpace(req.Method+" "+req.URL.Path+" "+req.Header.Get("Range")))
	r.mu.Unlock()
	if r.User != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.User || p != r.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		w.WriteHeader(http.StatusOK)
	case uploadRE.MatchString(p):
		r.upload(w, req, uploadRE.FindStringSubmatch(p))
	case blobRE.MatchString(p):
		m := blobRE.FindStringSubmatch(p)
		r.blob(w, req, digest.Digest(m[2]))
	case manifestRE.MatchString(p):
		m := manifestRE.FindStringSubmatch(p)
		r.manifest(w, req, m[1], m[2])
	default:
		http.NotFound(w, req)
	}
}

func (r *Registry) blob(w http.ResponseWriter, req *http.Request, d digest.Digest) {
	r.mu.Lock()
	b, ok := r.blobs[d]
	r.mu.Unlock()
	if !ok {
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Accept-Ranges", "bytes")
	start := int64(0)
	if rg := req.Header.Get("Range"); strings.HasPrefix(rg, "bytes=") {
		if r.FailRanged {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		from, _, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		start, _ = strconv.ParseInt(from, 10, 64)
		if start < 0 || start >= int64(len(b)) {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
	}
	body := b[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if start > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(b)-1, len(b)))
		w.WriteHeader(http.StatusPartialContent)
	}
	if req.Method == http.MethodHead {
		return
	}
	if cut := r.Cut; cut > 0 && cut < int64(len(body)) {
		w.Write(body[:cut])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Write(body)
}

func (r *Registry) upload(w http.ResponseWriter, req *http.Request, m []string) {
	repo, id := m[1], m[2]
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case req.Method == http.MethodPost && id == "":
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
		r.uploads[id] = &bytes.Buffer{}
		w.Header().Set("Location", "/v2/"+repo+"/blobs/uploads/"+id)
		w.Header().Set("Range", "0-0")
		w.WriteHeader(http.StatusAccepted)
	case (req.Method == http.MethodPatch || req.Method == http.MethodPut) && r.uploads[id] != nil:
		buf := r.uploads[id]
		if _, err := io.Copy(buf, req.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Method == http.MethodPatch {
			w.Header().Set("Location", req.URL.Path)
			w.Header().Set("Range", fmt.Sprintf("0-%d", buf.Len()-1))
			w.WriteHeader(http.StatusAccepted)
			return
		}
		d, err := digest.Parse(req.URL.Query().Get("digest"))
		if err != nil || digest.FromBytes(buf.Bytes()) != d {
			http.Error(w, `{"errors":[{"code":"DIGEST_INVALID"}]}`, http.StatusBadRequest)
			return
		}
		r.blobs[d] = buf.Bytes()
		delete(r.uploads, id)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d.String())
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, `{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}`, http.StatusNotFound)
	}
}

func (r *Registry) manifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	key := repo + ":" + ref
	if strings.HasPrefix(ref, "sha256:") {
		key = repo + "@" + ref
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch req.Method {
	case http.MethodPut:
		b, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d := digest.FromBytes(b)
		m := manifest{mediaType: req.Header.Get("Content-Type"), b: b}
		r.manifests[key] = m
		r.manifests[repo+"@"+d.String()] = m
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet, http.MethodHead:
		m, ok := r.manifests[key]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.b).String())
		w.Header().Set("Content-Length", strconv.Itoa(len(m.b)))
		if req.Method == http.MethodGet {
			w.Write(m.b)
		}
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
