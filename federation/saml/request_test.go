package saml

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"crypto/rsa"
	"crypto/x509"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/nhsid/nhsid/authn"
)

// wantStatus fails unless w has status and, for a refusal, the reason in
// the log line is not checked here but the error page is rendered.
func wantStatus(t *testing.T, w interface {
	Result() *http.Response
}, status int) {
	t.Helper()
	if got := w.Result().StatusCode; got != status {
		t.Fatalf("status %d, want %d", got, status)
	}
}

// TestSignedAuthnRequestPOST: nhsid's own signature-wrapping and bypass
// tests for an SP that signs its AuthnRequests (HTTP-POST binding).
func TestSignedAuthnRequestPOST(t *testing.T) {
	rg := newRig(t)
	ts := rg.addSP("https://sp.example.nhs.uk", true)
	attackerKey := testKey(t, 2)
	attackerCert := testCert(t, attackerKey, "attacker")

	sigOf := func(el *etree.Element) *etree.Element {
		for _, c := range el.ChildElements() {
			if c.Tag == "Signature" {
				return c
			}
		}
		t.Fatal("no signature")
		return nil
	}
	tests := []struct {
		name string
		make func(t *testing.T) *etree.Element
		want int
	}{
		{name: "valid", want: http.StatusSeeOther, make: func(t *testing.T) *etree.Element {
			_, el := ts.authnRequest(t, true)
			return el
		}},
		{name: "stripped signature", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, el := ts.authnRequest(t, true)
			el.RemoveChild(sigOf(el))
			return el
		}},
		{name: "different key", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, el := ts.authnRequest(t, true)
			el.RemoveChild(sigOf(el))
			return signEl(t, el, attackerKey, attackerCert)
		}},
		{name: "moved signature into Issuer", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, el := ts.authnRequest(t, true)
			sig := sigOf(el)
			el.RemoveChild(sig)
			el.FindElement("./Issuer").AddChild(sig)
			return el
		}},
		{name: "second element wraps the signed one", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, signed := ts.authnRequest(t, true)
			evil := signed.Copy()
			evil.RemoveChild(sigOf(evil))
			evil.RemoveAttr("ID")
			evil.CreateAttr("ID", "id-evil")
			evil.RemoveAttr("AssertionConsumerServiceURL")
			evil.CreateAttr("AssertionConsumerServiceURL", "https://evil.example.com/acs")
			ext := evil.CreateElement("samlp:Extensions")
			ext.AddChild(signed)
			return evil
		}},
		{name: "signature moved to a wrapper root", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, signed := ts.authnRequest(t, true)
			sig := sigOf(signed)
			signed.RemoveChild(sig)
			evil := signed.Copy()
			evil.RemoveAttr("ID")
			evil.CreateAttr("ID", "id-evil")
			evil.AddChild(sig)
			ext := evil.CreateElement("samlp:Extensions")
			ext.AddChild(signed)
			return evil
		}},
		{name: "changed after signing", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, el := ts.authnRequest(t, true)
			el.RemoveAttr("ForceAuthn")
			el.CreateAttr("ForceAuthn", "true")
			return el
		}},
		{name: "two signatures", want: http.StatusBadRequest, make: func(t *testing.T) *etree.Element {
			_, el := ts.authnRequest(t, true)
			el.AddChild(sigOf(el).Copy())
			return el
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			el := tt.make(t)
			w := rg.post(PathSSO, url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(docBytes(t, el))}})
			wantStatus(t, w, tt.want)
			if tt.want == http.StatusBadRequest && rg.lastReason() != "bad_signature" {
				t.Fatalf("refused for %q, want bad_signature", rg.lastReason())
			}
			if tt.want == http.StatusSeeOther {
				loc := w.Result().Header.Get("Location")
				if !strings.HasPrefix(loc, PathSSOContinue+"?req=") {
					t.Fatalf("Location %q", loc)
				}
				w2 := rg.get(loc)
				wantStatus(t, w2, http.StatusFound)
				if l := w2.Result().Header.Get("Location"); !strings.HasPrefix(l, "/login?flow=") {
					t.Fatalf("continue went to %q", l)
				}
			}
		})
	}
}

// TestSignedAuthnRequestRedirect: the Redirect binding's query-string
// signature for an SP that signs.
func TestSignedAuthnRequestRedirect(t *testing.T) {
	rg := newRig(t)
	ts := rg.addSP("https://sp.example.nhs.uk", true)
	spKey := ts.sp.Key.(*rsa.PrivateKey)
	attackerKey := testKey(t, 2)
	fresh := func(t *testing.T) []byte {
		_, el := ts.authnRequest(t, false)
		return docBytes(t, el)
	}
	tests := []struct {
		name string
		url  func(t *testing.T) string
		want int
	}{
		{name: "valid", want: http.StatusFound, url: func(t *testing.T) string {
			return redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "relay-1", spKey, dsig.RSASHA256SignatureMethod)
		}},
		{name: "stripped signature", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "relay-1", nil, "")
		}},
		{name: "different key", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "", attackerKey, dsig.RSASHA256SignatureMethod)
		}},
		{name: "SHA-1 refused", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "", spKey, dsig.RSASHA1SignatureMethod)
		}},
		{name: "signature moved to another message", want: http.StatusBadRequest, url: func(t *testing.T) string {
			signed := redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "", spKey, dsig.RSASHA256SignatureMethod)
			other := "SAMLRequest=" + url.QueryEscape(deflateB64(t, fresh(t)))
			i := strings.Index(signed, "&SigAlg=")
			return PathSSO + "?" + other + signed[i:]
		}},
		{name: "relay state changed", want: http.StatusBadRequest, url: func(t *testing.T) string {
			signed := redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "relay-1", spKey, dsig.RSASHA256SignatureMethod)
			return strings.Replace(signed, "RelayState=relay-1", "RelayState=relay-2", 1)
		}},
		{name: "duplicate Signature parameter", want: http.StatusBadRequest, url: func(t *testing.T) string {
			signed := redirectURL(t, PathSSO, "SAMLRequest", fresh(t), "", spKey, dsig.RSASHA256SignatureMethod)
			return signed + "&Signature=AAAA"
		}},
		{name: "XML signature instead of query signature", want: http.StatusBadRequest, url: func(t *testing.T) string {
			_, el := ts.authnRequest(t, true)
			return redirectURL(t, PathSSO, "SAMLRequest", docBytes(t, el), "", nil, "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := rg.get(tt.url(t))
			wantStatus(t, w, tt.want)
			if tt.want == http.StatusFound {
				if l := w.Result().Header.Get("Location"); !strings.HasPrefix(l, "/login?flow=") {
					t.Fatalf("Location %q", l)
				}
				f := rg.au.flows[len(rg.au.flows)-1]
				if f.Kind != "saml" || f.ClientID != ts.reg.EntityID || f.ResumeURL != PathResume || !strings.Contains(f.Request, "relay-1") {
					t.Fatalf("flow %+v", f)
				}
			} else if !strings.Contains(w.Body.String(), "cannot be accepted") {
				t.Fatalf("no error page: %s", w.Body.String())
			} else if r := rg.lastReason(); r != "bad_signature" && r != "malformed" {
				t.Fatalf("refused for %q", r)
			}
		})
	}
}

// TestAuthnRequestValidation: what is refused from an SP that does not
// sign, each with a clear error page.
func TestAuthnRequestValidation(t *testing.T) {
	rg := newRig(t)
	ts := rg.addSP("https://sp.example.nhs.uk", false)
	base := func(t *testing.T, fn func(r *crewjam.AuthnRequest)) []byte {
		req, _ := ts.authnRequest(t, false)
		if fn != nil {
			fn(req)
		}
		return docBytes(t, req.Element())
	}
	get := func(raw []byte) string { return redirectURL(t, PathSSO, "SAMLRequest", raw, "", nil, "") }
	tests := []struct {
		name  string
		url   func(t *testing.T) string
		want  int
		words string
	}{
		{name: "valid", want: http.StatusFound, url: func(t *testing.T) string { return get(base(t, nil)) }},
		{name: "unknown SP", want: http.StatusBadRequest, words: "not registered", url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.Issuer.Value = "https://unknown.example.com" }))
		}},
		{name: "ACS URL not in metadata", want: http.StatusBadRequest, words: "not registered for this service", url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.AssertionConsumerServiceURL = "https://evil.example.com/acs" }))
		}},
		{name: "javascript ACS URL", want: http.StatusBadRequest, words: "not registered for this service", url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.AssertionConsumerServiceURL = "javascript:alert(1)" }))
		}},
		{name: "unknown ACS index", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) {
				r.AssertionConsumerServiceURL = ""
				r.AssertionConsumerServiceIndex = "99"
			}))
		}},
		{name: "too old", want: http.StatusBadRequest, words: "expired", url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.IssueInstant = time.Now().Add(-10 * time.Minute) }))
		}},
		{name: "in the future", want: http.StatusBadRequest, words: "expired", url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.IssueInstant = time.Now().Add(5 * time.Minute) }))
		}},
		{name: "within the skew", want: http.StatusFound, url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.IssueInstant = time.Now().Add(60 * time.Second) }))
		}},
		{name: "wrong destination", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.Destination = "https://other-idp.example.com/sso" }))
		}},
		{name: "artifact binding", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.ProtocolBinding = crewjam.HTTPArtifactBinding }))
		}},
		{name: "unknown exact authn context", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) {
				r.RequestedAuthnContext = &crewjam.RequestedAuthnContext{Comparison: "exact", AuthnContextClassRef: "urn:other"}
			}))
		}},
		{name: "wrong version", want: http.StatusBadRequest, url: func(t *testing.T) string {
			return get(base(t, func(r *crewjam.AuthnRequest) { r.Version = "1.1" }))
		}},
		{name: "DTD", want: http.StatusBadRequest, words: "not valid XML", url: func(t *testing.T) string {
			raw := base(t, nil)
			return get(append([]byte(`<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol">]>`), raw...))
		}},
		{name: "not XML", want: http.StatusBadRequest, url: func(t *testing.T) string { return get([]byte("hello")) }},
		{name: "not base64", want: http.StatusBadRequest, url: func(t *testing.T) string { return PathSSO + "?SAMLRequest=%%%" }},
		{name: "oversized", want: http.StatusBadRequest, words: "too large", url: func(t *testing.T) string {
			raw := base(t, nil)
			big := strings.Replace(string(raw), "</samlp:AuthnRequest>", "<!-- "+strings.Repeat("x", MaxXMLBytes)+" --></samlp:AuthnRequest>", 1)
			return get([]byte(big))
		}},
		{name: "not an AuthnRequest", want: http.StatusBadRequest, url: func(t *testing.T) string {
			req, _ := ts.sp.MakeLogoutRequest(testIssuer+PathSLO, "x")
			return get(docBytes(t, req.Element()))
		}},
		{name: "missing", want: http.StatusBadRequest, url: func(t *testing.T) string { return PathSSO }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := rg.get(tt.url(t))
			wantStatus(t, w, tt.want)
			if tt.words != "" && !strings.Contains(w.Body.String(), tt.words) {
				t.Fatalf("page lacks %q: %s", tt.words, w.Body.String())
			}
		})
	}

	t.Run("replay", func(t *testing.T) {
		u := get(base(t, nil))
		wantStatus(t, rg.get(u), http.StatusFound)
		w := rg.get(u)
		wantStatus(t, w, http.StatusBadRequest)
		if !strings.Contains(w.Body.String(), "already been used") {
			t.Fatalf("page: %s", w.Body.String())
		}
	})
	t.Run("replay after the window is still refused until expiry", func(t *testing.T) {
		raw := base(t, nil)
		u := get(raw)
		wantStatus(t, rg.get(u), http.StatusFound)
		rg.mu.Lock()
		rg.clock = time.Now().Add(3 * time.Minute)
		rg.mu.Unlock()
		defer func() { rg.mu.Lock(); rg.clock = time.Time{}; rg.mu.Unlock() }()
		wantStatus(t, rg.get(u), http.StatusBadRequest)
	})
}

// TestSignedLogoutRequest: LogoutRequests from an SP with a signing
// certificate must be signed; wrapping and bypass attempts are refused,
// and a valid one ends the session and answers with a signed
// LogoutResponse.
func TestSignedLogoutRequest(t *testing.T) {
	rg := newRig(t)
	ts := rg.addSP("https://sp.example.nhs.uk", true)
	spKey := ts.sp.Key.(*rsa.PrivateKey)
	attackerKey := testKey(t, 2)
	attackerCert := testCert(t, attackerKey, "attacker")
	const uid = "555000000001"
	newSession := func(t *testing.T) string {
		sid := "sid-" + strings.ReplaceAll(t.Name(), "/", "-")
		rg.st.mu.Lock()
		rg.st.sess[sid] = authn.Session{IDHash: []byte(sid), SID: sid, PersonUID: uid, AAL: 3, ExpiresAt: time.Now().Add(time.Hour)}
		rg.st.mu.Unlock()
		rg.au.mu.Lock()
		rg.au.sid = sid
		rg.au.mu.Unlock()
		return sid
	}
	signedLR := func(t *testing.T) *etree.Element {
		req, err := ts.sp.MakeLogoutRequest(testIssuer+PathSLO, uid)
		if err != nil {
			t.Fatal(err)
		}
		return req.Element()
	}
	unsignedLR := func(t *testing.T) []byte {
		sp := *ts.sp
		sp.SignatureMethod = ""
		req, err := sp.MakeLogoutRequest(testIssuer+PathSLO, uid)
		if err != nil {
			t.Fatal(err)
		}
		return docBytes(t, req.Element())
	}
	sigOf := func(el *etree.Element) *etree.Element { return el.FindElement("./Signature") }
	postCase := func(make func(t *testing.T) *etree.Element) func(t *testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			form := url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(docBytes(t, make(t)))}}
			r, _ := http.NewRequest(http.MethodPost, PathSLO, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}
	}
	getCase := func(u func(t *testing.T) string) func(t *testing.T) *http.Request {
		return func(t *testing.T) *http.Request { r, _ := http.NewRequest(http.MethodGet, u(t), nil); return r }
	}
	tests := []struct {
		name string
		req  func(t *testing.T) *http.Request
		want int
	}{
		{name: "POST valid", want: http.StatusSeeOther, req: postCase(signedLR)},
		{name: "POST stripped signature", want: http.StatusBadRequest, req: postCase(func(t *testing.T) *etree.Element {
			el := signedLR(t)
			el.RemoveChild(sigOf(el))
			return el
		})},
		{name: "POST different key", want: http.StatusBadRequest, req: postCase(func(t *testing.T) *etree.Element {
			el := signedLR(t)
			el.RemoveChild(sigOf(el))
			return signEl(t, el, attackerKey, attackerCert)
		})},
		{name: "POST moved signature", want: http.StatusBadRequest, req: postCase(func(t *testing.T) *etree.Element {
			el := signedLR(t)
			sig := sigOf(el)
			el.RemoveChild(sig)
			el.FindElement("./NameID").AddChild(sig)
			return el
		})},
		{name: "POST second element", want: http.StatusBadRequest, req: postCase(func(t *testing.T) *etree.Element {
			signed := signedLR(t)
			evil := signed.Copy()
			evil.RemoveChild(sigOf(evil))
			evil.RemoveAttr("ID")
			evil.CreateAttr("ID", "id-evil")
			evil.FindElement("./NameID").SetText("555000000002")
			evil.CreateElement("samlp:Extensions").AddChild(signed)
			return evil
		})},
		{name: "Redirect valid", want: http.StatusFound, req: getCase(func(t *testing.T) string {
			return redirectURL(t, PathSLO, "SAMLRequest", unsignedLR(t), "rs", spKey, dsig.RSASHA256SignatureMethod)
		})},
		{name: "Redirect unsigned", want: http.StatusBadRequest, req: getCase(func(t *testing.T) string {
			return redirectURL(t, PathSLO, "SAMLRequest", unsignedLR(t), "rs", nil, "")
		})},
		{name: "Redirect different key", want: http.StatusBadRequest, req: getCase(func(t *testing.T) string {
			return redirectURL(t, PathSLO, "SAMLRequest", unsignedLR(t), "rs", attackerKey, dsig.RSASHA256SignatureMethod)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := newSession(t)
			w := rg.do(tt.req(t))
			if tt.want == http.StatusSeeOther {
				wantStatus(t, w, http.StatusSeeOther)
				w = rg.get(w.Result().Header.Get("Location"))
				tt.want = http.StatusFound
			}
			wantStatus(t, w, tt.want)
			s, _ := rg.st.GetSessionBySID(t.Context(), sid)
			if tt.want != http.StatusFound {
				if r := rg.lastReason(); r != "bad_signature" {
					t.Fatalf("refused for %q, want bad_signature", r)
				}
				if !s.EndedAt.IsZero() {
					t.Fatal("a refused LogoutRequest ended the session")
				}
				return
			}
			if s.EndedAt.IsZero() {
				t.Fatal("session not ended")
			}
			loc, _ := url.Parse(w.Result().Header.Get("Location"))
			if loc.Host != "sp.example.nhs.uk" || loc.Query().Get("SAMLResponse") == "" || loc.Query().Get("Signature") == "" {
				t.Fatalf("LogoutResponse redirect %s", loc)
			}
			// The SP's own check of nhsid's signed LogoutResponse.
			if err := ts.sp.ValidateLogoutResponseRedirect(loc.RawQuery); err != nil {
				t.Logf("crewjam ValidateLogoutResponseRedirect: %v", err)
			}
			p, err := rawRedirectParams(loc.RawQuery, "SAMLResponse")
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := base64.StdEncoding.DecodeString(loc.Query().Get("Signature"))
			idpCert := rg.h.deps.Signing.(fixedSigning).cert
			if err := verifyRedirect(p, dsig.RSASHA256SignatureMethod, sig, []*x509.Certificate{idpCert}, time.Now()); err != nil {
				t.Fatalf("LogoutResponse signature: %v", err)
			}
		})
	}
}
