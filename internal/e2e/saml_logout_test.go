package e2e

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	dsig "github.com/russellhaering/goxmldsig"

	fedsaml "github.com/nhsid/nhsid/federation/saml"
)

// soapSLO is an SP's SOAP SingleLogoutService: it keeps every body it
// gets and answers 200.
type soapSLO struct {
	mu     sync.Mutex
	bodies [][]byte
	notify chan struct{}
}

func (s *soapSLO) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.bodies = append(s.bodies, raw)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
}

func (s *soapSLO) got() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

// newSOAPSP is newSP (a samlsp SP signing its requests) whose metadata
// also has a SingleLogoutService on the SOAP binding at /slo/soap.
func (e *env) newSOAPSP() (*testSP, *soapSLO) {
	t := e.t
	t.Helper()
	resp, err := http.Get(e.issuer + fedsaml.PathMetadata)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	idpMeta, err := samlsp.ParseMetadata(raw)
	if err != nil {
		t.Fatalf("parse idp metadata: %v", err)
	}
	sp := &testSP{}
	slo := &soapSLO{notify: make(chan struct{}, 4)}
	mux := http.NewServeMux()
	sp.srv = httptest.NewServer(mux)
	t.Cleanup(sp.srv.Close)
	key, cert := selfSigned(t, "soap-sp.test")
	root, _ := url.Parse(sp.srv.URL)
	sp.mw, err = samlsp.New(samlsp.Options{URL: *root, Key: key, Certificate: cert, IDPMetadata: idpMeta, SignRequest: true})
	if err != nil {
		t.Fatal(err)
	}
	sp.mw.ServiceProvider.SignatureMethod = dsig.RSASHA256SignatureMethod
	sp.rec = &recordingSessions{SessionProvider: sp.mw.Session}
	sp.mw.Session = sp.rec
	mux.Handle("/saml/", sp.mw)
	mux.Handle("POST /slo/soap", slo)
	mux.Handle("/app", sp.mw.RequireAccount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	})))
	ed := sp.mw.ServiceProvider.Metadata()
	ed.SPSSODescriptors[0].SingleLogoutServices = append(ed.SPSSODescriptors[0].SingleLogoutServices,
		crewjam.Endpoint{Binding: crewjam.SOAPBinding, Location: sp.srv.URL + "/slo/soap"})
	sp.meta, err = xml.MarshalIndent(ed, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		ID string `json:"id"`
	}
	e.adminRaw("POST", "/admin/v1/saml/providers", "application/samlmetadata+xml", sp.meta, 201, &out)
	sp.id = out.ID
	return sp, slo
}

// idpSigningCert reads nhsid's signing certificate from /saml/metadata.
func (e *env) idpSigningCert() *x509.Certificate {
	t := e.t
	t.Helper()
	resp, err := http.Get(e.issuer + fedsaml.PathMetadata)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ed crewjam.EntityDescriptor
	if err := xml.Unmarshal(raw, &ed); err != nil {
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

// parseSOAPLogout is what the SP does with the SOAP body: find the
// LogoutRequest, verify its enveloped signature with the IdP certificate
// and read it. (crewjam v0.5.1 does not validate LogoutRequests.)
func parseSOAPLogout(t *testing.T, raw []byte, cert *x509.Certificate) *crewjam.LogoutRequest {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatalf("SOAP body: %v", err)
	}
	el := doc.FindElement("./Envelope/Body/LogoutRequest")
	if el == nil || doc.Root().NamespaceURI() != "http://schemas.xmlsoap.org/soap/envelope/" {
		t.Fatalf("no SOAP LogoutRequest in %s", raw)
	}
	one := etree.NewDocument()
	one.SetRoot(el.Copy())
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{cert}})
	verified, err := vc.Validate(one.Root())
	if err != nil {
		t.Fatalf("LogoutRequest signature: %v", err)
	}
	out := etree.NewDocument()
	out.SetRoot(verified)
	b, _ := out.WriteToBytes()
	var lr crewjam.LogoutRequest
	if err := xml.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}
	return &lr
}

// TestLogoutReachesSAMLSP (issue 7): sign in to two OIDC RPs and one SAML
// SP with a SOAP SingleLogoutService; log out from one RP with
// id_token_hint; the other RP gets a logout_token and the SP a signed
// LogoutRequest for the person.
func TestLogoutReachesSAMLSP(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid, b := e.clinician("Grace")
			c1, l1 := e.logoutRPClient(t, nil)
			c2, l2 := e.logoutRPClient(t, nil)
			sp, slo := e.newSOAPSP()
			s1 := signInTo(t, b, c1)
			s2 := signInTo(t, b, c2)
			mustEqual(t, "one SSO session", s2.sid, s1.sid)
			b.spFinish(sp, b.spStart(sp, false))
			mustEqual(t, "SAML NameID", sp.rec.last.Subject.NameID.Value, uid)
			sessionIndex := sp.rec.last.AuthnStatements[0].SessionIndex

			resp := b.get("/oauth2/logout?" + url.Values{"id_token_hint": {s1.idToken}}.Encode())
			if resp.StatusCode >= 400 {
				t.Fatalf("logout: status %d", resp.StatusCode)
			}
			for _, l := range []*logoutRP{l1, l2} {
				got := l.waitFor(1)
				mustEqual(t, "logout sid", got[0]["sid"], s1.sid)
			}

			var bodies [][]byte
			for deadline := time.Now().Add(10 * time.Second); ; {
				if _, err := e.srv.SAML.DeliverLogouts(context.Background()); err != nil {
					t.Fatalf("deliver SAML logouts: %v", err)
				}
				if bodies = slo.got(); len(bodies) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the SAML SP got no LogoutRequest")
				}
				select {
				case <-slo.notify:
				case <-time.After(50 * time.Millisecond):
				}
			}
			mustEqual(t, "LogoutRequests", len(bodies), 1)
			lr := parseSOAPLogout(t, bodies[0], e.idpSigningCert())
			mustEqual(t, "NameID", lr.NameID.Value, uid)
			mustEqual(t, "NameID format", lr.NameID.Format, fedsaml.NameIDPersistent)
			mustEqual(t, "Issuer", lr.Issuer.Value, e.issuer+fedsaml.PathMetadata)
			mustEqual(t, "Destination", lr.Destination, sp.srv.URL+"/slo/soap")
			if lr.SessionIndex == nil || lr.SessionIndex.Value != sessionIndex {
				t.Fatalf("SessionIndex %+v, want %q", lr.SessionIndex, sessionIndex)
			}
			if lr.NotOnOrAfter == nil || !lr.NotOnOrAfter.After(e.clock.Now()) {
				t.Fatalf("NotOnOrAfter %v", lr.NotOnOrAfter)
			}
			// An attempt is counted once recorded, just after the receiver
			// answered.
			for _, want := range []string{
				`nhsid_logout_deliveries_total{kind="oidc",outcome="delivered"} 2`,
				`nhsid_logout_deliveries_total{kind="saml",outcome="delivered"} 1`,
			} {
				for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.metrics(), want); {
					if time.Now().After(deadline) {
						t.Fatalf("metrics lack %s:\n%s", want, e.metrics())
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}
