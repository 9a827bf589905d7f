// Package apiauth authenticates and authorises requests to the agent's
// kubelet API as kubelet does with webhook authentication and authorization
// (kubelet --authentication-token-webhook --authorization-mode=Webhook):
//
//   - a client certificate that the TLS handshake verified against the
//     cluster CA names the user (CN) and groups (O);
//   - otherwise a bearer token is checked with a TokenReview;
//   - the user must then be allowed, by a SubjectAccessReview, the verb of the
//     request's method on the node's subresource for the request's path:
//     nodes/stats, nodes/metrics, nodes/log or, for everything else (logs,
//     exec, port-forward, pods), nodes/proxy.
//
// Reviews are cached as kubelet caches them: tokens for 2 minutes, allowed
// decisions for 5 minutes and denied ones for 30 seconds. Anonymous requests
// are refused (401), as with kubelet --anonymous-auth=false.
//
// It stands in for virtual-kubelet's nodeutil.WebhookAuth, which does the
// same through k8s.io/apiserver and its dependencies (CEL, etcd's client,
// OpenAPI…): about 10 MB of the agent's binary.
package apiauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenReviewer creates TokenReviews (client-go's TokenReviewInterface).
type TokenReviewer interface {
	Create(ctx context.Context, r *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

// AccessReviewer creates SubjectAccessReviews (client-go's
// SubjectAccessReviewInterface).
type AccessReviewer interface {
	Create(ctx context.Context, r *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)
}

// Config configures New.
type Config struct {
	// NodeName is the node whose subresources requests are checked against.
	NodeName string
	Tokens   TokenReviewer
	Access   AccessReviewer
}

// kubelet's defaults (k8s.io/kubelet/config/v1beta1).
const (
	tokenTTL   = 2 * time.Minute
	allowedTTL = 5 * time.Minute
	deniedTTL  = 30 * time.Second
	// maxCached bounds each cache; past it, expired entries go, and if that
	// is not enough, all of them.
	maxCached = 4096
)

// Auth checks requests; see the package comment.
type Auth struct {
	cfg    Config
	now    func() time.Time
	tokens cache[tokenResult]
	access cache[bool]
}

// New returns an Auth that reviews with cfg's clients.
func New(cfg Config) *Auth {
	return &Auth{cfg: cfg, now: time.Now}
}

// User is an authenticated user.
type User struct {
	Name, UID string
	Groups    []string
	Extra     map[string][]string
}

type tokenResult struct {
	user User
	ok   bool
}

// Wrap returns a handler that serves a request with h once it is
// authenticated (else 401) and authorised (else 403); a review that fails
// answers 401 or 500 and is not cached.
func (a *Auth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		u, ok, err := a.Authenticate(r)
		if err != nil || !ok {
			if err != nil {
				log.G(ctx).WithError(err).Warn("kubelet API: authentication")
			}
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb, sub := Attributes(r)
		allowed, err := a.Authorize(ctx, u, verb, sub)
		if err != nil {
			log.G(ctx).WithError(err).Warn("kubelet API: authorization")
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !allowed {
			http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", u.Name, verb, sub), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Authenticate returns the user of r: ok is false when r carries no
// credentials, or credentials that do not authenticate.
func (a *Auth) Authenticate(r *http.Request) (u User, ok bool, err error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		subj := r.TLS.VerifiedChains[0][0].Subject
		if subj.CommonName == "" {
			return User{}, false, fmt.Errorf("client certificate without a common name")
		}
		return User{Name: subj.CommonName, Groups: subj.Organization}, true, nil
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "bearer") || token == "" {
		return User{}, false, nil
	}
	key := sha256.Sum256([]byte(token))
	if res, hit := a.tokens.get(string(key[:]), a.now()); hit {
		return res.user, res.ok, nil
	}
	rev, err := a.cfg.Tokens.Create(r.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return User{}, false, fmt.Errorf("token review: %w", err)
	}
	res := tokenResult{ok: rev.Status.Authenticated}
	if res.ok {
		ui := rev.Status.User
		res.user = User{Name: ui.Username, UID: ui.UID, Groups: ui.Groups}
		for k, v := range ui.Extra {
			if res.user.Extra == nil {
				res.user.Extra = map[string][]string{}
			}
			res.user.Extra[k] = v
		}
	}
	a.tokens.put(string(key[:]), res, a.now(), tokenTTL)
	return res.user, res.ok, nil
}

// Attributes returns the verb and the node subresource a request is checked
// for, as kubelet maps them.
func Attributes(r *http.Request) (verb, subresource string) {
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodGet:
		verb = "get"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	}
	subresource = "proxy"
	for _, p := range []struct{ path, sub string }{{"/stats", "stats"}, {"/metrics", "metrics"}, {"/logs", "log"}} {
		if r.URL.Path == p.path || strings.HasPrefix(r.URL.Path, p.path+"/") {
			subresource = p.sub
		}
	}
	return verb, subresource
}

// Authorize tells whether u may verb the node's subresource.
func (a *Auth) Authorize(ctx context.Context, u User, verb, subresource string) (bool, error) {
	key := accessKey(u, verb, subresource)
	if allowed, hit := a.access.get(key, a.now()); hit {
		return allowed, nil
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = v
	}
	rev, err := a.cfg.Access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: verb, Version: "v1", Resource: "nodes", Subresource: subresource, Name: a.cfg.NodeName},
	}}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("subject access review: %w", err)
	}
	ttl := deniedTTL
	if rev.Status.Allowed {
		ttl = allowedTTL
	}
	a.access.put(key, rev.Status.Allowed, a.now(), ttl)
	return rev.Status.Allowed, nil
}

// accessKey identifies a review: everything in it that varies.
func accessKey(u User, verb, subresource string) string {
	var b strings.Builder
	for _, s := range []string{verb, subresource, u.Name, u.UID} {
		fmt.Fprintf(&b, "%q ", s)
	}
	fmt.Fprintf(&b, "%q ", u.Groups)
	keys := make([]string, 0, len(u.Extra))
	for k := range u.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q ", k, u.Extra[k])
	}
	return b.String()
}

// cache maps keys to values until their expiry.
type cache[V any] struct {
	mu sync.Mutex
	m  map[string]entry[V]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

func (c *cache[V]) get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *cache[V]) put(key string, v V, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]entry[V]{}
	}
	if len(c.m) >= maxCached {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCached {
			clear(c.m)
		}
	}
	c.m[key] = entry[V]{v, now.Add(ttl)}
}
