package saml

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/nhsid/nhsid/authn"
)

// soapSP is an SP's SOAP SingleLogoutService that records what it gets.
type soapSP struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	bodies [][]byte
	heads  []http.Header
}

func newSOAPSP(t *testing.T) *soapSP {
	s := &soapSP{status: http.StatusOK}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, raw)
		s.heads = append(s.heads, r.Header.Clone())
		st := s.status
		s.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *soapSP) set(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

func (s *soapSP) got() ([][]byte, []http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...), append([]http.Header(nil), s.heads...)
}

// addSOAPSP registers an SP whose metadata has a SOAP SingleLogoutService
// at loc, next to its Redirect one.
func (rg *rig) addSOAPSP(base, loc string) ServiceProvider {
	t := rg.t
	ts := rg.addSP(base, true)
	ed := ts.sp.Metadata()
	ed.EntityID = base + "/soap/metadata"
	ed.SPSSODescriptors[0].SingleLogoutServices = append(ed.SPSSODescriptors[0].SingleLogoutServices,
		crewjam.Endpoint{Binding: crewjam.SOAPBinding, Location: loc})
	meta, err := xml.Marshal(ed)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewServiceProvider("soap-"+base, meta, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := rg.st.CreateServiceProvider(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// idpCert reads the signing certificate from the IdP metadata.
func (rg *rig) idpCert() *x509.Certificate {
	t := rg.t
	w := rg.get(PathMetadata)
	var ed crewjam.EntityDescriptor
	if err := xml.Unmarshal(w.Body.Bytes(), &ed); err != nil {
		t.Fatal(err)
	}
	for _, kd := range ed.IDPSSODescriptors[0].KeyDescriptors {
		for _, c := range kd.KeyInfo.X509Data.X509Certificates {
			der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Data), ""))
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			return cert
		}
	}
	t.Fatal("no certificate in the IdP metadata")
	return nil
}

// verifySOAPLogout unwraps a SOAP LogoutRequest, checks its enveloped
// signature against cert and returns it.
func verifySOAPLogout(t *testing.T, raw []byte, cert *x509.Certificate) (*crewjam.LogoutRequest, error) {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	if doc.Root() == nil || doc.Root().Tag != "Envelope" || doc.Root().NamespaceURI() != soapEnvelopeNS {
		t.Fatalf("not a SOAP envelope: %s", raw)
	}
	el := doc.FindElement("./Envelope/Body/LogoutRequest")
	if el == nil {
		t.Fatalf("no LogoutRequest in %s", raw)
	}
	one := etree.NewDocument()
	one.SetRoot(el.Copy())
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{cert}})
	verified, err := vc.Validate(one.Root())
	if err != nil {
		return nil, err
	}
	out := etree.NewDocument()
	out.SetRoot(verified)
	b, _ := out.WriteToBytes()
	var lr crewjam.LogoutRequest
	if err := xml.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}
	return &lr, nil
}

func TestBackchannelLogoutSignedSOAP(t *testing.T) {
	rg := newRig(t)
	rg.clock = time.Now().UTC().Truncate(time.Second)
	soap := newSOAPSP(t)
	reg := rg.addSOAPSP("https://soap-sp.example.nhs.uk", soap.srv.URL+"/slo/soap")
	front := rg.addSP("https://front-sp.example.nhs.uk", false) // Redirect SLO only
	ctx := context.Background()
	for _, p := range []Participant{
		{SID: "sid-1", EntityID: reg.EntityID, NameID: "555000000001", SessionIndex: "sid-1"},
		{SID: "sid-1", EntityID: front.reg.EntityID, NameID: "555000000001", SessionIndex: "sid-1"},
	} {
		if err := rg.st.AddParticipant(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	b := rg.h.BackchannelLogout(soap.srv.Client(), SLOConfig{})
	if rg.h.BackchannelLogout(nil, SLOConfig{}) != b {
		t.Fatal("BackchannelLogout is not made once")
	}
	b.SessionEnded(ctx, authn.Session{SID: "sid-1", PersonUID: "555000000001"}, "rp_logout")
	n, err := rg.h.DeliverLogouts(ctx)
	if err != nil || n != 1 {
		t.Fatalf("DeliverLogouts = %d, %v; want 1 (only the SOAP SP)", n, err)
	}
	bodies, heads := soap.got()
	if len(bodies) != 1 {
		t.Fatalf("SP got %d requests", len(bodies))
	}
	if ct := heads[0].Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
		t.Fatalf("content type %q", ct)
	}
	if !strings.Contains(string(bodies[0]), dsig.RSASHA256SignatureMethod) {
		t.Fatal("not signed with RSA-SHA256")
	}
	cert := rg.idpCert()
	lr, err := verifySOAPLogout(t, bodies[0], cert)
	if err != nil {
		t.Fatalf("signature does not verify with the metadata certificate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", lr.Issuer.Value, testIssuer + PathMetadata},
		{"name id", lr.NameID.Value, "555000000001"},
		{"name id format", lr.NameID.Format, NameIDPersistent},
		{"session index", lr.SessionIndex.Value, "sid-1"},
		{"destination", lr.Destination, soap.srv.URL + "/slo/soap"},
		{"not on or after", lr.NotOnOrAfter.Equal(rg.clock.Add(2 * time.Minute)), true},
		{"version", lr.Version, "2.0"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Fatalf("got %v, want %v", c.got, c.want)
			}
		})
	}
	t.Run("tampered", func(t *testing.T) {
		bad := strings.Replace(string(bodies[0]), ">555000000001<", ">555000000002<", 1)
		if _, err := verifySOAPLogout(t, []byte(bad), cert); err == nil {
			t.Fatal("a tampered LogoutRequest verified")
		}
	})
	if n, _ := rg.h.DeliverLogouts(ctx); n != 0 {
		t.Fatal("delivered twice")
	}
}

func TestBackchannelLogoutRetry(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		recover     bool
		wantHits    int
		wantErr     bool
	}{
		{"recovers", 8, true, 2, false},
		{"gives up", 2, false, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t)
			rg.clock = time.Now().UTC().Truncate(time.Second)
			soap := newSOAPSP(t)
			soap.set(http.StatusServiceUnavailable)
			reg := rg.addSOAPSP("https://soap-sp.example.nhs.uk", soap.srv.URL+"/slo")
			ctx := context.Background()
			if err := rg.st.AddParticipant(ctx, Participant{SID: "s", EntityID: reg.EntityID, NameID: "555000000001"}); err != nil {
				t.Fatal(err)
			}
			var outcomes []string
			b := rg.h.BackchannelLogout(soap.srv.Client(), SLOConfig{MaxAttempts: tc.maxAttempts,
				Observe: func(o string) { outcomes = append(outcomes, o) }})
			b.SessionEnded(ctx, authn.Session{SID: "s", PersonUID: "555000000001"}, "user")
			if n, err := b.Deliver(ctx); n != 0 || err != nil {
				t.Fatalf("first attempt: %d %v", n, err)
			}
			if n, _ := b.Deliver(ctx); n != 0 {
				t.Fatal("retried before the backoff")
			}
			if bodies, _ := soap.got(); len(bodies) != 1 {
				t.Fatalf("hits %d before backoff", len(bodies))
			}
			if tc.recover {
				soap.set(http.StatusOK)
			}
			rg.mu.Lock()
			rg.clock = rg.clock.Add(5 * time.Second)
			rg.mu.Unlock()
			n, err := b.Deliver(ctx)
			if (err != nil) != tc.wantErr || (n == 1) != tc.recover {
				t.Fatalf("second attempt: %d %v", n, err)
			}
			if bodies, _ := soap.got(); len(bodies) != tc.wantHits {
				t.Fatalf("hits %d, want %d", len(bodies), tc.wantHits)
			}
			if left := rg.st.pendingSLO(); left != 0 {
				t.Fatalf("%d logouts left in the queue", left)
			}
			want := []string{"retry", "delivered"}
			if !tc.recover {
				want = []string{"retry", "given_up"}
			}
			if strings.Join(outcomes, ",") != strings.Join(want, ",") {
				t.Fatalf("observed %v, want %v", outcomes, want)
			}
		})
	}
}

// TestBackchannelLogoutDurable: a logout queued on a replica that stops
// before the SP answers is delivered by another replica (or the same one
// restarted) sharing the store, and RunLogoutDelivery sends a new one
// without being asked.
func TestBackchannelLogoutDurable(t *testing.T) {
	rg := newRig(t)
	rg.clock = time.Now().UTC().Truncate(time.Second)
	soap := newSOAPSP(t)
	soap.set(http.StatusServiceUnavailable)
	reg := rg.addSOAPSP("https://soap-sp.example.nhs.uk", soap.srv.URL+"/slo")
	ctx := context.Background()
	for _, sid := range []string{"s1", "s2"} {
		if err := rg.st.AddParticipant(ctx, Participant{SID: sid, EntityID: reg.EntityID, NameID: "555000000001", SessionIndex: sid}); err != nil {
			t.Fatal(err)
		}
	}
	first := rg.h.BackchannelLogout(soap.srv.Client(), SLOConfig{})
	first.SessionEnded(ctx, authn.Session{SID: "s1", PersonUID: "555000000001"}, "user")
	if n, err := first.Deliver(ctx); n != 0 || err != nil {
		t.Fatalf("while the SP is down: %d %v", n, err)
	}

	// The first replica is gone; another starts on the same store.
	other, err := New(rg.h.cfg, rg.h.deps)
	if err != nil {
		t.Fatal(err)
	}
	soap.set(http.StatusOK)
	if n, _ := other.DeliverLogouts(ctx); n != 0 {
		t.Fatal("the other replica did not wait for the backoff")
	}
	rg.mu.Lock()
	rg.clock = rg.clock.Add(5 * time.Second)
	rg.mu.Unlock()
	if n, _ := other.DeliverLogouts(ctx); n != 0 {
		t.Fatal("delivered without a BackchannelLogout")
	}
	other.BackchannelLogout(soap.srv.Client(), SLOConfig{PollInterval: time.Hour})
	if n, err := other.DeliverLogouts(ctx); n != 1 || err != nil {
		t.Fatalf("the other replica delivered %d, %v; want the queued logout", n, err)
	}
	bodies, _ := soap.got()
	if len(bodies) != 2 {
		t.Fatalf("SP got %d requests, want 2 (one refused, one accepted)", len(bodies))
	}
	lr, err := verifySOAPLogout(t, bodies[1], rg.idpCert())
	if err != nil || lr.SessionIndex.Value != "s1" || lr.NameID.Value != "555000000001" {
		t.Fatalf("delivered %+v, %v", lr, err)
	}

	// Running, the replica sends a new logout as soon as it is queued:
	// the hourly poll would not.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		other.RunLogoutDelivery(runCtx)
	}()
	defer func() { stop(); <-done }()
	other.BackchannelLogout(nil, SLOConfig{}).SessionEnded(ctx, authn.Session{SID: "s2", PersonUID: "555000000001"}, "user")
	deadline := time.Now().Add(10 * time.Second)
	for rg.st.pendingSLO() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("RunLogoutDelivery did not deliver the new logout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if bodies, _ := soap.got(); len(bodies) != 3 {
		t.Fatalf("SP got %d requests, want 3", len(bodies))
	}
}
