package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

const testIssuer = "https://id.example.nhs.uk"

// fakeStore is a minimal in-package Store (store/memory imports this
// package, so internal tests cannot use it).
type fakeStore struct {
	mu    sync.Mutex
	sps   map[string]ServiceProvider
	seen  map[string]time.Time
	parts map[string][]Participant
	chal  map[string][]byte
	sess  map[string]authn.Session  // by SID
	slo   map[string]LogoutDelivery // the back-channel logout queue, by ID
}

func newFakeStore() *fakeStore {
	return &fakeStore{sps: map[string]ServiceProvider{}, seen: map[string]time.Time{}, parts: map[string][]Participant{},
		chal: map[string][]byte{}, sess: map[string]authn.Session{}, slo: map[string]LogoutDelivery{}}
}

// reset forgets everything but the registered SPs.
func (f *fakeStore) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.seen)
	clear(f.parts)
	clear(f.chal)
	clear(f.sess)
	clear(f.slo)
}

func (f *fakeStore) EnqueueSAMLLogout(_ context.Context, d LogoutDelivery) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.slo[d.ID]; ok {
		return store.ErrExists
	}
	f.slo[d.ID] = d
	return nil
}

func (f *fakeStore) ClaimSAMLLogouts(_ context.Context, now, leaseUntil time.Time, limit int) ([]LogoutDelivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var due []LogoutDelivery
	for _, d := range f.slo {
		if d.DeliveredAt.IsZero() && d.FailedAt.IsZero() && !d.NextAttemptAt.After(now) && len(due) < limit {
			d.NextAttemptAt = leaseUntil
			f.slo[d.ID] = d
			due = append(due, d)
		}
	}
	return due, nil
}

func (f *fakeStore) UpdateSAMLLogout(_ context.Context, id string, fn func(*LogoutDelivery) error) (LogoutDelivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.slo[id]
	if !ok {
		return d, store.ErrNotFound
	}
	if err := fn(&d); err != nil {
		return d, err
	}
	f.slo[id] = d
	return d, nil
}

// pendingSLO counts the queued logouts neither delivered nor given up.
func (f *fakeStore) pendingSLO() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.slo {
		if d.DeliveredAt.IsZero() && d.FailedAt.IsZero() {
			n++
		}
	}
	return n
}

func (f *fakeStore) CreateServiceProvider(_ context.Context, sp ServiceProvider) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sps[sp.ID] = sp
	return nil
}

func (f *fakeStore) GetServiceProvider(_ context.Context, id string) (ServiceProvider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sp, ok := f.sps[id]
	if !ok {
		return sp, store.ErrNotFound
	}
	return sp, nil
}

func (f *fakeStore) GetServiceProviderByEntityID(_ context.Context, entityID string) (ServiceProvider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, sp := range f.sps {
		if sp.EntityID == entityID {
			return sp, nil
		}
	}
	return ServiceProvider{}, store.ErrNotFound
}

func (f *fakeStore) UpdateServiceProvider(_ context.Context, id string, fn func(*ServiceProvider) error) (ServiceProvider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sp, ok := f.sps[id]
	if !ok {
		return sp, store.ErrNotFound
	}
	if err := fn(&sp); err != nil {
		return sp, err
	}
	f.sps[id] = sp
	return sp, nil
}

func (f *fakeStore) ListServiceProviders(context.Context, string, int) ([]ServiceProvider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ServiceProvider
	for _, sp := range f.sps {
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeStore) RememberRequestID(_ context.Context, entityID, requestID string, expiresAt, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := entityID + "\x00" + requestID
	if exp, ok := f.seen[k]; ok && now.Before(exp) {
		return store.ErrExists
	}
	f.seen[k] = expiresAt
	return nil
}

func (f *fakeStore) AddParticipant(_ context.Context, p Participant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.parts[p.SID] = append(f.parts[p.SID], p)
	return nil
}

func (f *fakeStore) ListParticipants(_ context.Context, sid string) ([]Participant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.parts[sid], nil
}

func (f *fakeStore) PutChallenge(_ context.Context, key string, data []byte, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chal[key] = data
	return nil
}

func (f *fakeStore) TakeChallenge(_ context.Context, key string, _ time.Time) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.chal[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(f.chal, key)
	return d, nil
}

func (f *fakeStore) GetSessionBySID(_ context.Context, sid string) (authn.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sess[sid]
	if !ok {
		return s, store.ErrNotFound
	}
	return s, nil
}

func (f *fakeStore) UpdateSession(_ context.Context, idHash []byte, fn func(*authn.Session) error) (authn.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for sid, s := range f.sess {
		if bytes.Equal(s.IDHash, idHash) {
			if err := fn(&s); err != nil {
				return s, err
			}
			f.sess[sid] = s
			return s, nil
		}
	}
	return authn.Session{}, store.ErrNotFound
}

// fakeAuthn has at most one session (the "browser's"), and records flows.
type fakeAuthn struct {
	mu    sync.Mutex
	st    *fakeStore
	sid   string // current session, "" for none
	flows []authn.Flow
}

func (a *fakeAuthn) CurrentSession(*http.Request) (*authn.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sid == "" {
		return nil, nil
	}
	s, err := a.st.GetSessionBySID(context.Background(), a.sid)
	if err != nil || !s.EndedAt.IsZero() {
		return nil, nil
	}
	return &s, nil
}

func (a *fakeAuthn) Usable(s *authn.Session, _ time.Time) bool { return s != nil && s.EndedAt.IsZero() }

func (a *fakeAuthn) StartFlow(_ http.ResponseWriter, _ *http.Request, f authn.Flow) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f.ID = fmt.Sprintf("flow%d", len(a.flows))
	a.flows = append(a.flows, f)
	return "/login?flow=" + f.ID, nil
}

func (a *fakeAuthn) LoadFlow(_ *http.Request, id string) (*authn.Flow, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.flows {
		if f.ID == id {
			return &f, nil
		}
	}
	return nil, store.ErrNotFound
}

func (a *fakeAuthn) FinishFlow(context.Context, string) error           { return nil }
func (a *fakeAuthn) TouchSession(context.Context, *authn.Session) error { return nil }

type fakePeople map[string]policy.Person

func (p fakePeople) GetPerson(_ context.Context, uid string) (policy.Person, error) {
	if x, ok := p[uid]; ok {
		return x, nil
	}
	return policy.Person{}, store.ErrNotFound
}

// fixedSigning is an IdP key and certificate.
type fixedSigning struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
	all  []*x509.Certificate
}

func (s fixedSigning) SAMLSigning() (crypto.Signer, *x509.Certificate, []*x509.Certificate, error) {
	return s.key, s.cert, s.all, nil
}

var (
	keyOnce sync.Once
	keyPool []*rsa.PrivateKey
)

// testKey returns the i'th RSA key of a small shared pool.
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	keyOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keyPool = append(keyPool, k)
		}
	})
	return keyPool[i]
}

func testCert(t testing.TB, key *rsa.PrivateKey, cn string) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, Issuer: pkix.Name{CommonName: cn},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage: x509.KeyUsageDigitalSignature, SignatureAlgorithm: x509.SHA256WithRSA}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rig is a Handler with fakes, an IdP key and one or two registered SPs.
type rig struct {
	t     testing.TB
	h     *Handler
	st    *fakeStore
	au    *fakeAuthn
	mux   *http.ServeMux
	clock time.Time // zero: real time
	mu    sync.Mutex
	logs  lockedBuffer
	roles *fakeRoles
}

// reset returns the rig to its state after newRig and addSP: no sessions,
// flows, seen requests or logs.
func (rg *rig) reset() {
	rg.st.reset()
	rg.au.mu.Lock()
	rg.au.sid, rg.au.flows = "", nil
	rg.au.mu.Unlock()
	rg.logs.mu.Lock()
	rg.logs.buf.Reset()
	rg.logs.mu.Unlock()
}

// fakeRoles serves positions per person and a one-role catalogue.
type fakeRoles struct {
	mu  sync.Mutex
	pos map[string][]policy.Position
}

func (f *fakeRoles) ActivePositions(_ context.Context, uid string) ([]policy.Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]policy.Position(nil), f.pos[uid]...), nil
}

func (f *fakeRoles) Catalogue(context.Context) (policy.Catalogue, *policy.Index, error) {
	c := policy.Catalogue{JobRoles: []policy.JobRole{{Code: "S8000:G8000:R8000", Name: "Clinical Practitioner Access Role"}}}
	return c, policy.NewIndex(c), nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lastReason is the reason of the last refusal logged.
func (rg *rig) lastReason() string {
	rg.logs.mu.Lock()
	defer rg.logs.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(rg.logs.buf.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var rec struct {
			Msg, Reason string
		}
		if json.Unmarshal([]byte(lines[i]), &rec) == nil && rec.Msg == "saml request refused" {
			return rec.Reason
		}
	}
	return ""
}

func (rg *rig) now() time.Time {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	if rg.clock.IsZero() {
		return time.Now()
	}
	return rg.clock
}

func newRig(t testing.TB) *rig {
	rg := &rig{t: t, st: newFakeStore(), roles: &fakeRoles{pos: map[string][]policy.Position{}}}
	rg.au = &fakeAuthn{st: rg.st}
	idpKey := testKey(t, 0)
	cert := testCert(t, idpKey, "id.example.nhs.uk")
	h, err := New(Config{Issuer: testIssuer}, Deps{Store: rg.st, Pending: rg.st, Sessions: rg.st, Authn: rg.au,
		People:  fakePeople{"555000000001": {UID: "555000000001", GivenName: "Ada", FamilyName: "Lovelace", Email: "ada@example.nhs.uk", Status: policy.StatusActive}},
		Signing: fixedSigning{key: idpKey, cert: cert, all: []*x509.Certificate{cert}}, Now: rg.now,
		Log: slog.New(slog.NewJSONHandler(&rg.logs, nil)), Roles: rg.roles})
	if err != nil {
		t.Fatal(err)
	}
	rg.h = h
	rg.mux = http.NewServeMux()
	h.Mount(rg.mux)
	return rg
}

// testSP is a crewjam SP registered with the rig.
type testSP struct {
	sp  *crewjam.ServiceProvider
	reg ServiceProvider
}

// addSP registers an SP at base; signing makes it sign its requests
// (AuthnRequestsSigned="true") with key index keyIdx.
func (rg *rig) addSP(base string, signing bool) *testSP {
	t := rg.t
	key := testKey(t, 1)
	cert := testCert(t, key, "sp")
	root, _ := url.Parse(base)
	idpMeta, err := BuildMetadata(testIssuer, []*x509.Certificate{rg.h.deps.Signing.(fixedSigning).cert}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ed crewjam.EntityDescriptor
	if err := xml.Unmarshal(idpMeta, &ed); err != nil {
		t.Fatal(err)
	}
	sp := &crewjam.ServiceProvider{
		Key: key, Certificate: cert, IDPMetadata: &ed,
		MetadataURL:    *root.ResolveReference(&url.URL{Path: "/saml/metadata"}),
		AcsURL:         *root.ResolveReference(&url.URL{Path: "/saml/acs"}),
		SloURL:         *root.ResolveReference(&url.URL{Path: "/saml/slo"}),
		LogoutBindings: []string{crewjam.HTTPRedirectBinding},
	}
	if signing {
		sp.SignatureMethod = dsig.RSASHA256SignatureMethod
	}
	meta, err := xml.Marshal(sp.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewServiceProvider(fmt.Sprintf("sp%d", len(rg.st.sps)), meta, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := rg.st.CreateServiceProvider(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
	return &testSP{sp: sp, reg: reg}
}

// do serves one request and returns the recorder.
func (rg *rig) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	rg.mux.ServeHTTP(w, r)
	return w
}

func (rg *rig) get(u string) *httptest.ResponseRecorder {
	return rg.do(httptest.NewRequest(http.MethodGet, u, nil))
}

func (rg *rig) post(path string, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return rg.do(r)
}

func docBytes(t testing.TB, el *etree.Element) []byte {
	doc := etree.NewDocument()
	doc.SetRoot(el)
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func deflateB64(t testing.TB, raw []byte) string {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = w.Write(raw)
	_ = w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// redirectURL builds a Redirect binding URL for raw under field, signed
// with key when key is not nil.
func redirectURL(t testing.TB, path, field string, raw []byte, relay string, key *rsa.PrivateKey, sigAlg string) string {
	q := field + "=" + url.QueryEscape(deflateB64(t, raw))
	if relay != "" {
		q += "&RelayState=" + url.QueryEscape(relay)
	}
	if key != nil {
		q += "&SigAlg=" + url.QueryEscape(sigAlg)
		h := crypto.SHA256
		sum := sha256.Sum256([]byte(q))
		digest := sum[:]
		if sigAlg == dsig.RSASHA1SignatureMethod {
			h = crypto.SHA1
			s1 := crypto.SHA1.New()
			s1.Write([]byte(q))
			digest = s1.Sum(nil)
		}
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, h, digest)
		if err != nil {
			t.Fatal(err)
		}
		q += "&Signature=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig))
	}
	return path + "?" + q
}

// authnRequest makes an AuthnRequest element from sp (signed enveloped
// when signed).
func (ts *testSP) authnRequest(t testing.TB, signed bool) (*crewjam.AuthnRequest, *etree.Element) {
	binding := crewjam.HTTPRedirectBinding
	if signed {
		binding = crewjam.HTTPPostBinding
	}
	req, err := ts.sp.MakeAuthenticationRequest(testIssuer+PathSSO, binding, crewjam.HTTPPostBinding)
	if err != nil {
		t.Fatal(err)
	}
	return req, req.Element()
}

// signEl signs el (enveloped, RSA-SHA256) with key/cert, placing the
// signature as its last child.
func signEl(t testing.TB, el *etree.Element, key *rsa.PrivateKey, cert *x509.Certificate) *etree.Element {
	sc, err := dsig.NewSigningContext(key, [][]byte{cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	sc.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := sc.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		t.Fatal(err)
	}
	signed, err := sc.SignEnveloped(el)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}
