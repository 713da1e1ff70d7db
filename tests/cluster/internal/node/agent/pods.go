package agent

import (
	"context"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// podChanged is the informer's add/update handler: it must not block.
func (n *Node) podChanged(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	n.byName[pod.Namespace+"/"+pod.Name] = pod.UID
	w := n.workers[pod.UID]
	if w == nil {
		w = newPodWorker(n, pod)
		w.pod = pod
		n.workers[pod.UID] = w
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			w.loop()
		}()
	}
	w.setPod(pod)
}

// podRemoved is the informer's delete handler.
func (n *Node) podRemoved(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byName[pod.Namespace+"/"+pod.Name] == pod.UID {
		delete(n.byName, pod.Namespace+"/"+pod.Name)
	}
	if w := n.workers[pod.UID]; w != nil {
		w.setGone()
	}
}

func (n *Node) removeWorker(uid types.UID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.workers, uid)
}

// lookupPod returns the uid for namespace/name and the latest pod object.
func (n *Node) lookupPod(namespace, name string) (types.UID, *v1.Pod) {
	n.mu.Lock()
	uid, ok := n.byName[namespace+"/"+name]
	var w *podWorker
	if ok {
		w = n.workers[uid]
	}
	n.mu.Unlock()
	if !ok {
		return "", nil
	}
	if w == nil {
		return uid, nil
	}
	pod, _ := w.latest()
	return uid, pod
}

func (n *Node) allPods() []*v1.Pod {
	n.mu.Lock()
	ws := make([]*podWorker, 0, len(n.workers))
	for _, w := range n.workers {
		ws = append(ws, w)
	}
	n.mu.Unlock()
	out := make([]*v1.Pod, 0, len(ws))
	for _, w := range ws {
		if p, _ := w.latest(); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// --- object getters (configMaps, secrets, tokens) ---

// getter implements envvars.Sources and volume.Getter for one sync,
// caching each object for the duration of that sync.
type getter struct {
	n       *Node
	ctx     context.Context
	cms     map[string]cmResult
	secrets map[string]secretResult
}

type cmResult struct {
	cm  *v1.ConfigMap
	err error
}

type secretResult struct {
	s   *v1.Secret
	err error
}

func (n *Node) newGetter(ctx context.Context) *getter {
	return &getter{n: n, ctx: ctx, cms: map[string]cmResult{}, secrets: map[string]secretResult{}}
}

func (g *getter) ConfigMap(ns, name string) (*v1.ConfigMap, error) {
	k := ns + "/" + name
	if r, ok := g.cms[k]; ok {
		return r.cm, r.err
	}
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	cm, err := g.n.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	g.cms[k] = cmResult{cm, err}
	return cm, err
}

func (g *getter) Secret(ns, name string) (*v1.Secret, error) {
	k := ns + "/" + name
	if r, ok := g.secrets[k]; ok {
		return r.s, r.err
	}
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	s, err := g.n.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	g.secrets[k] = secretResult{s, err}
	return s, err
}

func (g *getter) Token(pod *v1.Pod, audience string, exp int64) (string, error) {
	return g.n.tokens.get(g.ctx, pod, audience, exp)
}

// tokenCache holds service-account tokens bound to pods and renews them
// after 80% of their lifetime (like the kubelet's token manager).
type tokenCache struct {
	client kubernetes.Interface
	mu     sync.Mutex
	m      map[string]cachedToken
}

type cachedToken struct {
	token   string
	issued  time.Time
	expires time.Time
}

func newTokenCache(c kubernetes.Interface) *tokenCache {
	return &tokenCache{client: c, m: map[string]cachedToken{}}
}

func tokenKey(pod *v1.Pod, audience string, exp int64) string {
	return string(pod.UID) + "|" + pod.Spec.ServiceAccountName + "|" + audience + "|" + time.Duration(exp*int64(time.Second)).String()
}

func (t *tokenCache) get(ctx context.Context, pod *v1.Pod, audience string, exp int64) (string, error) {
	key := tokenKey(pod, audience, exp)
	t.mu.Lock()
	c, ok := t.m[key]
	t.mu.Unlock()
	now := time.Now()
	if ok && now.Before(c.issued.Add(c.expires.Sub(c.issued)*8/10)) {
		return c.token, nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			},
		},
	}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tr, err := t.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(cctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		if ok && now.Before(c.expires) {
			return c.token, nil // keep using the old one until it expires
		}
		return "", err
	}
	// Renew relative to the requested lifetime (the API server may extend
	// the real expiry of tokens with the default audience).
	expires := now.Add(time.Duration(exp) * time.Second)
	if tr.Spec.ExpirationSeconds != nil && *tr.Spec.ExpirationSeconds > 0 {
		expires = now.Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second)
	}
	if e := tr.Status.ExpirationTimestamp.Time; !e.IsZero() && e.Before(expires) {
		expires = e
	}
	t.mu.Lock()
	t.m[key] = cachedToken{token: tr.Status.Token, issued: now, expires: expires}
	t.mu.Unlock()
	return tr.Status.Token, nil
}

// nextRefresh is the earliest time a token of pod needs renewing (zero if none).
func (t *tokenCache) nextRefresh(uid types.UID) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next time.Time
	prefix := string(uid) + "|"
	for k, c := range t.m {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			r := c.issued.Add(c.expires.Sub(c.issued) * 8 / 10)
			if next.IsZero() || r.Before(next) {
				next = r
			}
		}
	}
	return next
}

func (t *tokenCache) forget(uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prefix := string(uid) + "|"
	for k := range t.m {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			delete(t.m, k)
		}
	}
}
