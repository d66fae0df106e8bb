package saml

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
)

var reValue = regexp.MustCompile(`name="SAMLResponse" value="([^"]*)"`)

// signIn gives the rig's browser a session at aal.
func (rg *rig) signIn(aal int, selected string) {
	rg.st.mu.Lock()
	rg.st.sess["sid-1"] = authn.Session{IDHash: []byte("h1"), SID: "sid-1", PersonUID: "555000000001", AAL: aal,
		AuthTime: time.Now().Add(-time.Minute), ExpiresAt: time.Now().Add(time.Hour), SelectedRoleID: selected}
	rg.st.mu.Unlock()
	rg.au.mu.Lock()
	rg.au.sid = "sid-1"
	rg.au.mu.Unlock()
}

// response extracts and parses the SAMLResponse from a POST page.
func response(t *testing.T, body string) *etree.Document {
	t.Helper()
	m := reValue.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no SAMLResponse in page:\n%s", body)
	}
	raw, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	return doc
}

func attrValues(doc *etree.Document) map[string][]string {
	out := map[string][]string{}
	for _, a := range doc.FindElements("//Attribute") {
		for _, v := range a.SelectElements("AttributeValue") {
			out[a.SelectAttrValue("Name", "")] = append(out[a.SelectAttrValue("Name", "")], v.Text())
		}
	}
	return out
}

func TestIssueResponse(t *testing.T) {
	rg := newRig(t)
	ts := rg.addSP("https://sp.example.nhs.uk", false)
	idpCert := rg.h.deps.Signing.(fixedSigning).cert
	start := func(t *testing.T) *http.Response {
		req, _ := ts.authnRequest(t, false)
		return rg.get(redirectURL(t, PathSSO, "SAMLRequest", docBytes(t, req.Element()), "rs", nil, "")).Result()
	}
	setSign := func(mode string) {
		_, _ = rg.st.UpdateServiceProvider(context.Background(), ts.reg.ID, func(sp *ServiceProvider) error {
			sp.Settings.Sign = mode
			return nil
		})
	}
	tests := []struct {
		name               string
		sign               string
		aal                int
		wantResp, wantAsst bool
		class              string
	}{
		{name: "both, AAL3", sign: SignBoth, aal: 3, wantResp: true, wantAsst: true, class: ClassAAL3},
		{name: "assertion only, AAL2", sign: SignAssertion, aal: 2, wantAsst: true, class: ClassAAL2},
		{name: "response only", sign: SignResponse, aal: 3, wantResp: true, class: ClassAAL3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setSign(tt.sign)
			rg.signIn(tt.aal, "")
			resp := start(t)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			body := readBody(resp)
			if strings.Contains(body, "<script>") {
				t.Fatal("inline script")
			}
			doc := response(t, body)
			root := doc.Root()
			hasRespSig := root.SelectElement("Signature") != nil
			asst := root.SelectElement("Assertion")
			hasAsstSig := asst.SelectElement("Signature") != nil
			if hasRespSig != tt.wantResp || hasAsstSig != tt.wantAsst {
				t.Fatalf("signatures: response %v assertion %v", hasRespSig, hasAsstSig)
			}
			if tt.wantResp {
				vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: []*x509.Certificate{idpCert}})
				if _, err := vc.Validate(root); err != nil {
					t.Fatalf("response signature: %v", err)
				}
			}
			if got := asst.FindElement(".//AuthnContextClassRef").Text(); got != tt.class {
				t.Fatalf("class %q, want %q", got, tt.class)
			}
			if nid := asst.FindElement(".//NameID"); nid.Text() != "555000000001" || nid.SelectAttrValue("Format", "") != NameIDPersistent {
				t.Fatalf("NameID %v", nid)
			}
			attrs := attrValues(doc)
			if attrs["uid"][0] != "555000000001" || attrs["sn"][0] != "Lovelace" || attrs["aal"][0] != string(rune('0'+tt.aal)) {
				t.Fatalf("attributes %v", attrs)
			}
		})
	}

	t.Run("roles and selection", func(t *testing.T) {
		setSign(SignBoth)
		p1 := policy.Position{RoleID: "100000000001", OrgCode: "RAL", OrgName: "Royal Free", RoleCode: "S8000:G8000:R8000"}
		p2 := policy.Position{RoleID: "100000000002", OrgCode: "RRK", OrgName: "Birmingham", RoleCode: "S8000:G8001:R8001"}
		rg.roles.mu.Lock()
		rg.roles.pos["555000000001"] = []policy.Position{p1, p2}
		rg.roles.mu.Unlock()
		_, _ = rg.st.UpdateServiceProvider(context.Background(), ts.reg.ID, func(sp *ServiceProvider) error {
			sp.Settings.SelectRole = true
			return nil
		})
		rg.signIn(3, "")
		resp := start(t)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), PathSelectRole+"?flow=") {
			t.Fatalf("want role selection, got %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		f := rg.au.flows[len(rg.au.flows)-1]
		if f.SessionSID != "sid-1" || f.ResumeURL != PathResume {
			t.Fatalf("flow %+v", f)
		}
		rg.signIn(3, p1.RoleID) // what authn's page records
		doc := response(t, readBody(start(t)))
		attrs := attrValues(doc)
		if attrs["selectedRoleId"][0] != p1.RoleID || attrs["selectedRoleCode"][0] != p1.RoleCode ||
			attrs["selectedRoleName"][0] != "Clinical Practitioner Access Role" || attrs["selectedRoleOrg"][0] != "RAL" {
			t.Fatalf("selected role attributes %v", attrs)
		}
		if len(attrs["roles"]) != 2 || strings.Join(attrs["organisations"], ",") != "RAL,RRK" {
			t.Fatalf("roles %v orgs %v", attrs["roles"], attrs["organisations"])
		}
		// Allowed roles: the selected one is not allowed.
		_, _ = rg.st.UpdateServiceProvider(context.Background(), ts.reg.ID, func(sp *ServiceProvider) error {
			sp.Settings.AllowedRoles = []string{"R8001"}
			return nil
		})
		resp = start(t)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("disallowed role: %d", resp.StatusCode)
		}
	})

	t.Run("min AAL steps up", func(t *testing.T) {
		_, _ = rg.st.UpdateServiceProvider(context.Background(), ts.reg.ID, func(sp *ServiceProvider) error {
			sp.Settings = Settings{MinAAL: 3, Sign: SignBoth}
			return nil
		})
		rg.signIn(2, "")
		resp := start(t)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/login?flow=") {
			t.Fatalf("AAL2 session at AAL3 SP: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if f := rg.au.flows[len(rg.au.flows)-1]; f.MinAAL != 3 {
			t.Fatalf("flow min AAL %d", f.MinAAL)
		}
	})

	t.Run("RequestedAuthnContext aal3 steps up", func(t *testing.T) {
		_, _ = rg.st.UpdateServiceProvider(context.Background(), ts.reg.ID, func(sp *ServiceProvider) error {
			sp.Settings = Settings{MinAAL: 2, Sign: SignBoth}
			return nil
		})
		rg.signIn(2, "")
		req, _ := ts.authnRequest(t, false)
		req.RequestedAuthnContext = &crewjam.RequestedAuthnContext{Comparison: "minimum", AuthnContextClassRef: ClassAAL3}
		resp := rg.get(redirectURL(t, PathSSO, "SAMLRequest", docBytes(t, req.Element()), "", nil, "")).Result()
		if resp.StatusCode != http.StatusFound || rg.au.flows[len(rg.au.flows)-1].MinAAL != 3 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})

	t.Run("IdP-initiated", func(t *testing.T) {
		rg.signIn(3, "")
		resp := rg.get(PathIdPInitiated + "?sp=" + url.QueryEscape(ts.reg.EntityID)).Result()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		doc := response(t, readBody(resp))
		if a := doc.Root().SelectAttr("InResponseTo"); a != nil && a.Value != "" {
			t.Fatal("unsolicited response has InResponseTo")
		}
		if rg.get(PathIdPInitiated+"?sp=nope").Result().StatusCode != http.StatusBadRequest {
			t.Fatal("unknown SP")
		}
	})
}

func readBody(r *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

func TestParseSPMetadata(t *testing.T) {
	const tmpl = `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example.nhs.uk">
<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="%SIGNED%">
<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="%ACS%" index="1"/>
</md:SPSSODescriptor></md:EntityDescriptor>`
	md := func(acs, signed string) []byte {
		return []byte(strings.NewReplacer("%ACS%", acs, "%SIGNED%", signed).Replace(tmpl))
	}
	tests := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{name: "valid", raw: md("https://sp.example.nhs.uk/acs", "false"), ok: true},
		{name: "javascript ACS", raw: md("javascript:alert(1)", "false")},
		{name: "data ACS", raw: md("data:text/html,x", "false")},
		{name: "relative ACS", raw: md("/acs", "false")},
		{name: "signed without certificate", raw: md("https://sp.example.nhs.uk/acs", "true")},
		{name: "DTD", raw: append([]byte(`<!DOCTYPE x [<!ENTITY e "x">]>`), md("https://sp.example.nhs.uk/acs", "false")...)},
		{name: "oversized", raw: []byte(strings.Repeat(" ", MaxMetadataBytes+1))},
		{name: "not metadata", raw: []byte(`<x/>`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSPMetadata(tt.raw)
			if tt.ok != (err == nil) {
				t.Fatalf("err %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("error %v is not ErrInvalidMetadata", err)
			}
		})
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		ok   bool
	}{
		{name: "defaults", s: Settings{}, ok: true},
		{name: "full", s: Settings{MinAAL: 3, Sign: SignResponse, Attributes: map[string]string{"uid": "urn:oid:0.9.2342.19200300.100.1.1", "email": "-"}}, ok: true},
		{name: "bad aal", s: Settings{MinAAL: 1}},
		{name: "bad sign", s: Settings{Sign: "none"}},
		{name: "unknown attribute", s: Settings{Attributes: map[string]string{"password": "x"}}},
		{name: "markup in name", s: Settings{Attributes: map[string]string{"uid": "<x>"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Validate(); tt.ok != (err == nil) {
				t.Fatalf("err %v", err)
			}
		})
	}
}
