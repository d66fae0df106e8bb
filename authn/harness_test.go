package authn_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/fxamacker/cbor/v2"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/webauthntest"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	testPublicURL = "http://localhost:8080"
	testUID       = "100000000001"
)

// harness is an authn service on the memory store behind an HTTP server,
// with test-only routes that play the provider's part (starting flows).
type harness struct {
	t     *testing.T
	srv   *httptest.Server
	svc   *authn.Service
	store *memory.Store
	// flowReads counts the service's reads of flows.
	flowReads *flowReads
	clock     *clock
	rp        virtualwebauthn.RelyingParty
	ca        *testCA
}

type harnessOption func(*authn.Config)

// flowReads is the memory store, counting GetFlow calls.
type flowReads struct {
	*memory.Store
	n atomic.Int32
}

func (f *flowReads) GetFlow(ctx context.Context, id string, at time.Time) (authn.Flow, error) {
	f.n.Add(1)
	return f.Store.GetFlow(ctx, id, at)
}

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	st := memory.New()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	ca := newTestCA(t)
	anchor := filepath.Join(t.TempDir(), "anchor.pem")
	if err := os.WriteFile(anchor, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authn.Config{PublicURL: testPublicURL, TrustAnchors: []string{anchor}}
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	if _, fuzzing := t.(*testing.F); fuzzing {
		log = slog.New(slog.DiscardHandler) // F.Log may not be called from fuzz targets
	}
	reads := &flowReads{Store: st}
	svc, err := authn.New(cfg, authn.Deps{Store: reads, People: st, Now: clk.Now, Log: log})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}
	mux := http.NewServeMux()
	svc.Mount(mux)
	// The provider's part: start a flow, and the resume URL.
	mux.HandleFunc("GET /test/start", func(w http.ResponseWriter, r *http.Request) {
		minAAL := 2
		if r.URL.Query().Get("aal") == "3" {
			minAAL = 3
		}
		u, err := svc.StartFlow(w, r, authn.Flow{Kind: "oidc", ClientID: "c1", MinAAL: minAAL, ResumeURL: "/test/resume", RequestedAt: clk.Now()})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = io.WriteString(w, u)
	})
	mux.HandleFunc("GET /test/session", func(w http.ResponseWriter, r *http.Request) {
		s, err := svc.CurrentSession(r)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = json.NewEncoder(w).Encode(s)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := st.CreatePerson(context.Background(), policy.Person{
		UID: testUID, GivenName: "Alex", FamilyName: "Morgan", Email: "alex@example.nhs.uk",
		IDAssuranceLevel: 3, Status: policy.StatusActive, CreatedAt: clk.Now(), UpdatedAt: clk.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, svc: svc, store: st, flowReads: reads, clock: clk, ca: ca,
		rp: virtualwebauthn.RelyingParty{ID: "localhost", Name: "NHS ID", Origin: testPublicURL}}
	if tt, ok := t.(*testing.T); ok {
		h.t = tt
	}
	return h
}

// browser is an HTTP client with its own cookie jar that never follows
// redirects.
type browser struct {
	h *harness
	c *http.Client
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{h: h, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type reply struct {
	status int
	body   []byte
	header http.Header
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("reply %d is not JSON: %s", r.status, r.body)
	}
	return m
}

func (r reply) errorCode(t testing.TB) string {
	t.Helper()
	code, _ := r.json(t)["error"].(string)
	return code
}

func (b *browser) do(t testing.TB, method, path string, body string, contentType string) reply {
	t.Helper()
	req, err := http.NewRequest(method, b.h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: data, header: resp.Header}
}

func (b *browser) postJSON(t testing.TB, path string, v any) reply {
	t.Helper()
	var body string
	switch x := v.(type) {
	case string:
		body = x
	default:
		data, _ := json.Marshal(v)
		body = string(data)
	}
	return b.do(t, http.MethodPost, path, body, "application/json")
}

func (b *browser) get(t testing.TB, path string) reply {
	t.Helper()
	return b.do(t, http.MethodGet, path, "", "")
}

func (b *browser) postForm(t testing.TB, path string, form url.Values) reply {
	t.Helper()
	return b.do(t, http.MethodPost, path, form.Encode(), "application/x-www-form-urlencoded")
}

// startFlow plays /oauth2/authorize: it returns the new flow's id.
func (b *browser) startFlow(t testing.TB, minAAL int) string {
	t.Helper()
	path := "/test/start"
	if minAAL == 3 {
		path += "?aal=3"
	}
	r := b.get(t, path)
	if r.status != 200 || !strings.HasPrefix(string(r.body), "/login?flow=") {
		t.Fatalf("start flow: %d %s", r.status, r.body)
	}
	return strings.TrimPrefix(string(r.body), "/login?flow=")
}

// key is a software authenticator holding one credential of the test person.
type key struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
}

func newKey(opts virtualwebauthn.AuthenticatorOptions) *key {
	if opts.UserHandle == nil {
		opts.UserHandle = []byte(testUID)
	}
	return &key{auth: virtualwebauthn.NewAuthenticatorWithOptions(opts), cred: newCredential()}
}

// newCredential returns a P-256 credential that always verifies (see
// webauthntest.NewCredential).
func newCredential() virtualwebauthn.Credential { return webauthntest.NewCredential() }

// registerBegin asks for creation options (invite may be empty).
func (b *browser) registerBegin(t testing.TB, invite string) (reply, *virtualwebauthn.AttestationOptions) {
	t.Helper()
	body := map[string]string{}
	if invite != "" {
		body["invite"] = invite
	}
	r := b.postJSON(t, "/webauthn/register/begin", body)
	if r.status != 200 {
		return r, nil
	}
	opts, err := virtualwebauthn.ParseAttestationOptions(string(r.body))
	if err != nil {
		t.Fatalf("parse creation options: %v: %s", err, r.body)
	}
	return r, opts
}

func finishPath(invite string) string {
	if invite == "" {
		return "/webauthn/register/finish"
	}
	return "/webauthn/register/finish?invite=" + url.QueryEscape(invite)
}

// enrol registers k with a software (self) attestation.
func (b *browser) enrol(t testing.TB, invite string, k *key) reply {
	t.Helper()
	r, opts := b.registerBegin(t, invite)
	if opts == nil {
		return r
	}
	att := virtualwebauthn.CreateAttestationResponse(b.h.rp, k.auth, k.cred, *opts)
	k.auth.AddCredential(k.cred)
	return b.postJSON(t, finishPath(invite), att)
}

// enrolAttested registers k with a packed attestation whose x5c chains to
// the harness's test CA.
func (b *browser) enrolAttested(t testing.TB, invite string, k *key) reply {
	t.Helper()
	r, opts := b.registerBegin(t, invite)
	if opts == nil {
		return r
	}
	att := b.h.ca.attest(t, b.h.rp, k, *opts)
	k.auth.AddCredential(k.cred)
	return b.postJSON(t, finishPath(invite), att)
}

// loginBegin asks for request options for a flow.
func (b *browser) loginBegin(t testing.TB, flow string) (reply, *virtualwebauthn.AssertionOptions) {
	t.Helper()
	r := b.postJSON(t, "/webauthn/login/begin", map[string]string{"flow": flow})
	if r.status != 200 {
		return r, nil
	}
	opts, err := virtualwebauthn.ParseAssertionOptions(string(r.body))
	if err != nil {
		t.Fatalf("parse request options: %v: %s", err, r.body)
	}
	return r, opts
}

// assertion signs the options' challenge with k.
func (b *browser) assertion(k *key, opts *virtualwebauthn.AssertionOptions) string {
	return virtualwebauthn.CreateAssertionResponse(b.h.rp, k.auth, k.cred, *opts)
}

// login runs a whole sign-in for flow with k.
func (b *browser) login(t testing.TB, flow string, k *key) reply {
	t.Helper()
	r, opts := b.loginBegin(t, flow)
	if opts == nil {
		return r
	}
	return b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, opts))
}

func (b *browser) session(t testing.TB) *authn.Session {
	t.Helper()
	r := b.get(t, "/test/session")
	var s *authn.Session
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatalf("session: %s", r.body)
	}
	return s
}

func (h *harness) invite(t testing.TB) string {
	t.Helper()
	code, u, exp, err := h.svc.IssueInvite(context.Background(), testUID, "ra-agent")
	if err != nil {
		t.Fatal(err)
	}
	if u != testPublicURL+"/enrol?invite="+code || !exp.Equal(h.clock.Now().Add(15*time.Minute)) {
		t.Fatalf("invite url %q expires %v", u, exp)
	}
	return code
}

// testCA issues attestation certificates, as an authenticator vendor does.
type testCA struct {
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	leaf    *x509.Certificate
	leafKey *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Authenticator Root CA", Organization: []string{"Test Vendor"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject: pkix.Name{Country: []string{"GB"}, Organization: []string{"Test Vendor"},
			OrganizationalUnit: []string{"Authenticator Attestation"}, CommonName: "Test Key Attestation"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: false, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return &testCA{root: root, rootKey: rootKey, leaf: leaf, leafKey: leafKey}
}

// attest builds a registration response with packed "basic" attestation:
// authenticator data with the credential, and attStmt {alg, sig, x5c}
// signed by the attestation key.
func (ca *testCA) attest(t testing.TB, rp virtualwebauthn.RelyingParty, k *key, opts virtualwebauthn.AttestationOptions) string {
	t.Helper()
	clientDataJSON, _ := json.Marshal(map[string]string{
		"type": "webauthn.create", "challenge": base64.RawURLEncoding.EncodeToString(opts.Challenge), "origin": rp.Origin,
	})
	rpIDHash := sha256.Sum256([]byte(rp.ID))
	flags := byte(0x01 | 0x40) // UP, AT
	if !k.auth.Options.UserNotVerified {
		flags |= 0x04
	}
	if k.auth.Options.BackupEligible {
		flags |= 0x08
	}
	var authData bytes.Buffer
	authData.Write(rpIDHash[:])
	authData.WriteByte(flags)
	authData.Write([]byte{byte(k.cred.Counter >> 24), byte(k.cred.Counter >> 16), byte(k.cred.Counter >> 8), byte(k.cred.Counter)})
	authData.Write(k.auth.Aaguid[:])
	authData.Write([]byte{byte(len(k.cred.ID) >> 8), byte(len(k.cred.ID))})
	authData.Write(k.cred.ID)
	authData.Write(k.cred.Key.AttestationData())
	cdHash := sha256.Sum256(clientDataJSON)
	digest := sha256.Sum256(append(authData.Bytes(), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, ca.leafKey, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := cbor.CTAP2EncOptions().EncMode()
	attObj, err := enc.Marshal(map[string]any{
		"fmt":      "packed",
		"authData": authData.Bytes(),
		"attStmt":  map[string]any{"alg": -7, "sig": sig, "x5c": [][]byte{ca.leaf.Raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := base64.RawURLEncoding.EncodeToString(k.cred.ID)
	out, _ := json.Marshal(map[string]any{
		"id": id, "rawId": id, "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    base64.RawURLEncoding.EncodeToString(clientDataJSON),
			"attestationObject": base64.RawURLEncoding.EncodeToString(attObj),
		},
		"clientExtensionResults": map[string]any{},
	})
	return string(out)
}

// testWriter sends the service's log to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
