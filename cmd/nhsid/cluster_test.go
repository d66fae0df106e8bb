package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nhsid/nhsid/internal/webauthntest"
)

// This file runs several `nhsid serve` processes (the built binary) on
// loopback ports sharing one PostgreSQL database, behind a small
// round-robin reverse proxy, for the scale-out and fault tests.

// clusterNode is one nhsid process.
type clusterNode struct {
	pub, adm string // host:port
	proc     *started
}

// cluster is N nodes behind a round-robin proxy at issuer.
type cluster struct {
	t          *testing.T
	issuer     string
	nodes      []*clusterNode
	lb         *rrProxy
	adminToken string
	ca         *webauthntest.CA
	cfgFile    string
	dbURL      string // the URL nodes use (maybe through a fault proxy)
	rawDBURL   string // the database itself
}

// rrProxy is a round-robin HTTP reverse proxy that records which backend
// served each request.
type rrProxy struct {
	srv      *http.Server
	backends []string
	next     atomic.Uint64
	mu       sync.Mutex
	served   map[string][]int // path -> backend indexes, in order
	// down holds backends that refused a connection, until the time
	// given (passive health checking, as any load balancer does).
	down map[int]time.Time
}

type backendKey struct{}

// pick returns the next backend in turn that is not marked down.
func (p *rrProxy) pick() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var i int
	for range p.backends {
		i = int(p.next.Add(1)-1) % len(p.backends)
		if time.Now().After(p.down[i]) {
			return i
		}
	}
	return i
}

func newRRProxy(t *testing.T, ln net.Listener, backends []string) *rrProxy {
	p := &rrProxy{backends: backends, served: map[string][]int{}, down: map[int]time.Time{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := p.pick()
			r.Out = r.Out.WithContext(context.WithValue(r.Out.Context(), backendKey{}, i))
			p.mu.Lock()
			p.served[r.In.URL.Path] = append(p.served[r.In.URL.Path], i)
			p.mu.Unlock()
			r.SetURL(&url.URL{Scheme: "http", Host: p.backends[i]})
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 15 * time.Second},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if i, ok := r.Context().Value(backendKey{}).(int); ok {
				p.mu.Lock()
				p.down[i] = time.Now().Add(3 * time.Second)
				p.mu.Unlock()
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// servedBy returns the backend indexes that served path, in order.
func (p *rrProxy) servedBy(path string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.served[path]...)
}

// clusterOptions tune newCluster.
type clusterOptions struct {
	nodes int
	// dbURL, when set, is the URL the nodes use (e.g. through a fault
	// proxy); rawDBURL is then the database itself, for migrations.
	dbURL, rawDBURL string
	// extraYAML is appended to the config file.
	extraYAML string
}

func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	if o.rawDBURL == "" {
		o.rawDBURL = emptyDatabase(t)
	}
	if o.dbURL == "" {
		o.dbURL = o.rawDBURL
	}
	if out, err := exec.Command(binary, "migrate", "up", "--database-url", o.rawDBURL).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c := &cluster{t: t, issuer: "http://localhost:" + port, dbURL: o.dbURL, rawDBURL: o.rawDBURL}
	c.ca, err = webauthntest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	anchor := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(anchor, c.ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := fmt.Sprintf("%x", b)
	c.adminToken = "cluster-admin-" + secret[:24]
	cfg := fmt.Sprintf(`issuer: %s
secrets: {global_secret: %q, client_secret_pepper: %q, key_encryption_key: %q}
admin: {bootstrap_token: %q}
webauthn: {trust_anchors: [%q]}
keys: {prepublish: 0s, reload_interval: 1s}
rate_limits: {exempt: ["127.0.0.0/8", "::1/128"]}
log: {level: info}
%s`, c.issuer, secret, secret, secret, c.adminToken, anchor, o.extraYAML)
	c.cfgFile = filepath.Join(dir, "nhsid.yaml")
	if err := os.WriteFile(c.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var backends []string
	for i := 0; i < o.nodes; i++ {
		n := &clusterNode{pub: "127.0.0.1:" + freePort(t), adm: "127.0.0.1:" + freePort(t)}
		n.proc = start(t, []string{"NHSID_DATABASE_URL=" + c.dbURL}, "serve", "--config", c.cfgFile,
			"--listen", n.pub, "--admin-listen", n.adm)
		c.nodes = append(c.nodes, n)
		backends = append(backends, n.pub)
	}
	for _, n := range c.nodes {
		waitStatus(t, "http://"+n.pub+"/readyz", 200, 30*time.Second)
	}
	c.lb = newRRProxy(t, ln, backends)
	return c
}

// admin calls the admin API of node i.
func (c *cluster) admin(i int, method, path string, body any, want int, out any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, "http://"+c.nodes[i].adm+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

// client is a registered relying party.
type clusterClient struct {
	id, secret, redirectURI string
}

func (c *cluster) newClient(grants ...string) clusterClient {
	c.t.Helper()
	if len(grants) == 0 {
		grants = []string{"authorization_code"}
	}
	cc := clusterClient{redirectURI: "https://rp.example/cb"}
	meta := map[string]any{"client_name": "cluster", "redirect_uris": []string{cc.redirectURI},
		"grant_types": grants, "token_endpoint_auth_method": "client_secret_basic", "scope": "openid profile"}
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	c.admin(0, "POST", "/admin/v1/clients", meta, 201, &out)
	cc.id, cc.secret = out.ClientID, out.ClientSecret
	return cc
}

// user is a person with an enrolled device and a browser (cookie jar).
type clusterUser struct {
	c    *cluster
	uid  string
	dev  *webauthntest.Device
	http *http.Client
}

func (c *cluster) newUser(name string) *clusterUser {
	c.t.Helper()
	var p struct {
		UID string `json:"uid"`
	}
	c.admin(0, "POST", "/admin/v1/people", map[string]any{"given_name": name, "family_name": "Cluster",
		"email": strings.ToLower(name) + "@example.nhs.uk", "id_assurance_level": 3}, 201, &p)
	var inv struct {
		Code string `json:"code"`
	}
	c.admin(len(c.nodes)-1, "POST", "/admin/v1/people/"+p.UID+"/invites", nil, 201, &inv)
	u := &clusterUser{c: c, uid: p.UID, dev: webauthntest.NewDevice("localhost", c.issuer, c.ca)}
	jar, _ := cookiejar.New(nil)
	u.http = &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	st, opts, err := u.postJSON("/webauthn/register/begin", map[string]string{"invite": inv.Code})
	if err != nil || st != 200 {
		c.t.Fatalf("register begin: %d %v %s", st, err, opts)
	}
	att, err := u.dev.Register(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	st, raw, err := u.postJSON("/webauthn/register/finish?invite="+url.QueryEscape(inv.Code), json.RawMessage(att))
	if err != nil || st != 200 {
		c.t.Fatalf("register finish: %d %v %s", st, err, raw)
	}
	return u
}

func (u *clusterUser) postJSON(path string, body any) (int, []byte, error) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", u.c.issuer+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	resp, err := u.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, nil
}

// errRetry marks a step that failed in a way a client retries (a node
// went away, or the service said it is temporarily unavailable).
var errRetry = errors.New("retryable")

// follow follows nhsid redirects until one leaves the issuer or lands on
// the login page.
func (u *clusterUser) follow(start string) (*url.URL, error) {
	next := start
	for i := 0; i < 10; i++ {
		if strings.HasPrefix(next, "/") {
			next = u.c.issuer + next
		}
		loc, _ := url.Parse(next)
		if !strings.HasPrefix(next, u.c.issuer) || loc.Path == "/login" {
			return loc, nil
		}
		resp, err := u.http.Get(next)
		if err != nil {
			return nil, fmt.Errorf("%w: GET %s: %v", errRetry, loc.Path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable:
			return nil, fmt.Errorf("%w: GET %s: %d", errRetry, loc.Path, resp.StatusCode)
		case resp.StatusCode < 300 || resp.StatusCode >= 400:
			return nil, fmt.Errorf("GET %s: %d", loc.Path, resp.StatusCode)
		}
		n, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			return nil, err
		}
		next = n.String()
	}
	return nil, errors.New("too many redirects")
}

// signIn runs authorize → (ceremony if asked) → callback and returns the
// code; loggedIn reports whether the ceremony ran (false means SSO).
func (u *clusterUser) signIn(cc clusterClient) (code, verifier string, ceremony bool, err error) {
	v := make([]byte, 32)
	_, _ = rand.Read(v)
	verifier = base64.RawURLEncoding.EncodeToString(v)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {cc.id}, "redirect_uri": {cc.redirectURI},
		"scope": {"openid profile"}, "state": {verifier[:12]}, "nonce": {verifier[12:24]},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	loc, err := u.follow("/oauth2/authorize?" + q.Encode())
	if err != nil {
		return "", "", false, err
	}
	if loc.Path == "/login" {
		ceremony = true
		flow := loc.Query().Get("flow")
		st, opts, err := u.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
		if err != nil || st == 502 || st == 503 {
			return "", "", true, fmt.Errorf("%w: login begin %d %v", errRetry, st, err)
		}
		if st != 200 {
			return "", "", true, fmt.Errorf("login begin: %d %s", st, opts)
		}
		as, err := u.dev.Assert(opts)
		if err != nil {
			return "", "", true, err
		}
		st, raw, err := u.postJSON("/webauthn/login/finish?flow="+url.QueryEscape(flow), json.RawMessage(as))
		if err != nil || st == 502 || st == 503 {
			return "", "", true, fmt.Errorf("%w: login finish %d %v", errRetry, st, err)
		}
		if st != 200 {
			return "", "", true, fmt.Errorf("login finish: %d %s", st, raw)
		}
		var out struct {
			Redirect string `json:"redirect"`
		}
		_ = json.Unmarshal(raw, &out)
		if loc, err = u.follow(out.Redirect); err != nil {
			return "", "", true, err
		}
	}
	if !strings.HasPrefix(loc.String(), cc.redirectURI) || loc.Query().Get("code") == "" {
		return "", "", ceremony, fmt.Errorf("ended at %s", loc.Redacted())
	}
	return loc.Query().Get("code"), verifier, ceremony, nil
}

// token posts a token request with client_secret_basic and returns the
// status and decoded reply.
func (c *cluster) token(hc *http.Client, cc clusterClient, form url.Values) (int, map[string]any, error) {
	req, _ := http.NewRequest("POST", c.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(cc.id), url.QueryEscape(cc.secret))
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

func (c *cluster) exchange(hc *http.Client, cc clusterClient, code, verifier string) (map[string]any, error) {
	st, out, err := c.token(hc, cc, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {cc.redirectURI}, "code_verifier": {verifier}})
	if err != nil || st == 502 || st == 503 {
		return nil, fmt.Errorf("%w: token %d %v", errRetry, st, err)
	}
	if st != 200 {
		return nil, fmt.Errorf("token: %d %v", st, out)
	}
	return out, nil
}

// jwksKIDs returns the kids node i serves.
func (c *cluster) jwksKIDs(i int) map[string]bool {
	resp, err := http.Get("http://" + c.nodes[i].pub + "/jwks.json")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&set)
	out := map[string]bool{}
	for _, k := range set.Keys {
		out[k.KID] = true
	}
	return out
}

// runCLI runs the binary against the cluster's database and config.
func (c *cluster) runCLI(args ...string) []byte {
	c.t.Helper()
	cmd := exec.CommandContext(context.Background(), binary, append(args, "--config", c.cfgFile)...)
	cmd.Env = append(os.Environ(), "NHSID_DATABASE_URL="+c.rawDBURL)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			c.t.Fatalf("%v: %v\n%s", args, err, ee.Stderr)
		}
		c.t.Fatalf("%v: %v", args, err)
	}
	return out
}

// newJar is an empty cookie jar (a fresh browser).
func newJar() (http.CookieJar, error) { return cookiejar.New(nil) }
