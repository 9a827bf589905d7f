package apiauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reviewer answers reviews from its maps and records them.
type reviewer struct {
	users   map[string]authenticationv1.UserInfo // token → user
	allowed map[string]bool                      // "user verb subresource"
	err     error
	tokens  []string
	access  []authorizationv1.SubjectAccessReviewSpec
}

func (f *reviewer) tokenReviews() TokenReviewer   { return tokenFunc(f.token) }
func (f *reviewer) accessReviews() AccessReviewer { return accessFunc(f.review) }

func (f *reviewer) token(_ context.Context, r *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	f.tokens = append(f.tokens, r.Spec.Token)
	if f.err != nil {
		return nil, f.err
	}
	u, ok := f.users[r.Spec.Token]
	r.Status = authenticationv1.TokenReviewStatus{Authenticated: ok, User: u}
	return r, nil
}

func (f *reviewer) review(_ context.Context, r *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	f.access = append(f.access, r.Spec)
	if f.err != nil {
		return nil, f.err
	}
	ra := r.Spec.ResourceAttributes
	r.Status.Allowed = f.allowed[r.Spec.User+" "+ra.Verb+" "+ra.Subresource]
	return r, nil
}

type tokenFunc func(context.Context, *authenticationv1.TokenReview, metav1.CreateOptions) (*authenticationv1.TokenReview, error)

func (f tokenFunc) Create(ctx context.Context, r *authenticationv1.TokenReview, o metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	return f(ctx, r, o)
}

type accessFunc func(context.Context, *authorizationv1.SubjectAccessReview, metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)

func (f accessFunc) Create(ctx context.Context, r *authorizationv1.SubjectAccessReview, o metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	return f(ctx, r, o)
}

func newTest() (*Auth, *reviewer, *time.Time) {
	f := &reviewer{
		users: map[string]authenticationv1.UserInfo{
			"good":   {Username: "alice", UID: "u1", Groups: []string{"devs"}, Extra: map[string]authenticationv1.ExtraValue{"scopes": {"a"}}},
			"reader": {Username: "bob"},
		},
		allowed: map[string]bool{"alice get proxy": true, "alice create proxy": true, "apiserver get proxy": true, "alice get stats": true},
	}
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	a := New(Config{NodeName: "edge-1", Tokens: f.tokenReviews(), Access: f.accessReviews()})
	a.now = func() time.Time { return now }
	return a, f, &now
}

func serve(a *Auth, r *http.Request) int {
	w := httptest.NewRecorder()
	a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })).ServeHTTP(w, r)
	return w.Code
}

func TestWrap(t *testing.T) {
	cert := func(cn string, orgs ...string) *tls.ConnectionState {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: orgs}}
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	for _, tc := range []struct {
		name, method, path, auth string
		tls                      *tls.ConnectionState
		reviewErr                error
		want                     int
		wantSpec                 *authorizationv1.SubjectAccessReviewSpec
	}{
		{name: "no credentials", method: "GET", path: "/containerLogs/ns/p/c", want: 401},
		{name: "basic auth is not a token", method: "GET", path: "/containerLogs/ns/p/c", auth: "Basic Zm9vOmJhcg==", want: 401},
		{name: "empty bearer token", method: "GET", path: "/containerLogs/ns/p/c", auth: "Bearer ", want: 401},
		{name: "unknown token", method: "GET", path: "/containerLogs/ns/p/c", auth: "Bearer bad", want: 401},
		{name: "token review fails", method: "GET", path: "/containerLogs/ns/p/c", auth: "Bearer good", reviewErr: errors.New("down"), want: 401},
		{name: "token, allowed", method: "GET", path: "/containerLogs/ns/p/c", auth: "bearer good", want: http.StatusTeapot,
			wantSpec: &authorizationv1.SubjectAccessReviewSpec{User: "alice", UID: "u1", Groups: []string{"devs"},
				Extra:              map[string]authorizationv1.ExtraValue{"scopes": {"a"}},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "nodes", Subresource: "proxy", Name: "edge-1"}}},
		{name: "token, denied", method: "GET", path: "/containerLogs/ns/p/c", auth: "Bearer reader", want: 403},
		{name: "exec is create on proxy", method: "POST", path: "/exec/ns/p/c", auth: "Bearer good", want: http.StatusTeapot},
		{name: "stats subresource", method: "GET", path: "/stats/summary", auth: "Bearer good", want: http.StatusTeapot},
		{name: "metrics subresource", method: "GET", path: "/metrics/resource", auth: "Bearer good", want: 403},
		{name: "logs subresource", method: "GET", path: "/logs/", auth: "Bearer good", want: 403},
		{name: "statsfoo is proxy", method: "GET", path: "/statsfoo", auth: "Bearer good", want: http.StatusTeapot},
		{name: "profiles are proxy", method: "GET", path: "/debug/pprof/profile", auth: "Bearer good", want: http.StatusTeapot,
			wantSpec: &authorizationv1.SubjectAccessReviewSpec{User: "alice", UID: "u1", Groups: []string{"devs"},
				Extra:              map[string]authorizationv1.ExtraValue{"scopes": {"a"}},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "nodes", Subresource: "proxy", Name: "edge-1"}}},
		{name: "client certificate", method: "GET", path: "/containerLogs/ns/p/c", tls: cert("apiserver", "system:masters"), want: http.StatusTeapot,
			wantSpec: &authorizationv1.SubjectAccessReviewSpec{User: "apiserver", Groups: []string{"system:masters"}, Extra: map[string]authorizationv1.ExtraValue{},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "nodes", Subresource: "proxy", Name: "edge-1"}}},
		{name: "client certificate wins over a token", method: "GET", path: "/containerLogs/ns/p/c", tls: cert("apiserver"), auth: "Bearer reader", want: http.StatusTeapot},
		{name: "client certificate without a name", method: "GET", path: "/containerLogs/ns/p/c", tls: cert(""), want: 401},
		{name: "client certificate, denied", method: "DELETE", path: "/pods", tls: cert("apiserver"), want: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, f, _ := newTest()
			f.err = tc.reviewErr
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r.TLS = tc.tls
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if got := serve(a, r); got != tc.want {
				t.Errorf("status = %d, want %d", got, tc.want)
			}
			if tc.wantSpec != nil {
				if len(f.access) != 1 {
					t.Fatalf("access reviews = %+v, want one", f.access)
				}
				got, want := f.access[0], *tc.wantSpec
				if got.User != want.User || got.UID != want.UID || !slices.Equal(got.Groups, want.Groups) ||
					len(got.Extra) != len(want.Extra) || *got.ResourceAttributes != *want.ResourceAttributes {
					t.Errorf("review = %+v %+v,\nwant %+v %+v", got, *got.ResourceAttributes, want, *want.ResourceAttributes)
				}
			}
		})
	}
}

func TestAccessReviewError(t *testing.T) {
	a, f, _ := newTest()
	r := httptest.NewRequest("GET", "/pods", nil)
	r.Header.Set("Authorization", "Bearer good")
	if got := serve(a, r); got != http.StatusTeapot {
		t.Fatalf("status = %d", got)
	}
	f.err = errors.New("down")
	r = httptest.NewRequest("GET", "/stats", nil) // not cached yet
	r.Header.Set("Authorization", "Bearer good")
	if got := serve(a, r); got != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", got)
	}
}

// TestCache: reviews are reused until they expire — tokens after 2 minutes,
// allowed decisions after 5, denied ones after 30 seconds.
func TestCache(t *testing.T) {
	a, f, now := newTest()
	do := func(token, method string) int {
		r := httptest.NewRequest(method, "/containerLogs/ns/p/c", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return serve(a, r)
	}
	counts := func() [2]int { return [2]int{len(f.tokens), len(f.access)} }
	for _, step := range []struct {
		advance       time.Duration
		token, method string
		want          int
		reviews       [2]int // token and access reviews so far
	}{
		{0, "good", "GET", http.StatusTeapot, [2]int{1, 1}},
		{time.Minute, "good", "GET", http.StatusTeapot, [2]int{1, 1}},
		{0, "reader", "GET", 403, [2]int{2, 2}},
		{20 * time.Second, "reader", "GET", 403, [2]int{2, 2}},
		{11 * time.Second, "reader", "GET", 403, [2]int{2, 3}},             // denied expired
		{30 * time.Second, "good", "GET", http.StatusTeapot, [2]int{3, 3}}, // token expired, decision still cached
		{0, "good", "POST", http.StatusTeapot, [2]int{3, 4}},
		{4 * time.Minute, "good", "GET", http.StatusTeapot, [2]int{4, 5}},
	} {
		*now = now.Add(step.advance)
		if got := do(step.token, step.method); got != step.want || counts() != step.reviews {
			t.Fatalf("after %v, %s %s: status %d, reviews %v; want %d, %v", step.advance, step.method, step.token, got, counts(), step.want, step.reviews)
		}
	}
}
