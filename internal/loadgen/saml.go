package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"time"

	crewjam "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
)

// SAMLSSO is the SAML scenario name.
const SAMLSSO = "saml-sso"

// SAMLProvider is a SAML service provider registered by Setup. It does not
// sign its AuthnRequests (the generator spends its CPU on the server's
// work, not its own); it verifies every response's signature.
type SAMLProvider struct {
	EntityID string `json:"entity_id"`
	ACS      string `json:"acs_url"`
	KeyPEM   string `json:"key_pem"`
	CertPEM  string `json:"cert_pem"`
}

// newSAMLProvider makes the SP's key and certificate and its metadata.
func newSAMLProvider() (*SAMLProvider, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nhsid-load sp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	p := &SAMLProvider{EntityID: "http://127.0.0.1:9/saml/metadata-" + randString(6), ACS: "http://127.0.0.1:9/saml/acs",
		KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
	sp, err := p.serviceProvider(nil)
	if err != nil {
		return nil, nil, err
	}
	meta, err := xml.Marshal(sp.Metadata())
	if err != nil {
		return nil, nil, err
	}
	return p, meta, nil
}

func (p *SAMLProvider) serviceProvider(idp *crewjam.EntityDescriptor) (*crewjam.ServiceProvider, error) {
	kb, _ := pem.Decode([]byte(p.KeyPEM))
	cb, _ := pem.Decode([]byte(p.CertPEM))
	if kb == nil || cb == nil {
		return nil, errors.New("saml provider: bad key or certificate")
	}
	key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("saml provider key: %w", err)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("saml provider certificate: %w", err)
	}
	acs, _ := url.Parse(p.ACS)
	meta, _ := url.Parse(p.EntityID)
	return &crewjam.ServiceProvider{EntityID: p.EntityID, Key: key, Certificate: cert, AcsURL: *acs, MetadataURL: *meta,
		IDPMetadata: idp, AuthnNameIDFormat: crewjam.UnspecifiedNameIDFormat}, nil
}

// registerSAML registers p's metadata through the admin API.
func registerSAML(ctx context.Context, adm *adminClient, meta []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, adm.base+"/admin/v1/saml/providers", bytes.NewReader(meta))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adm.token)
	req.Header.Set("Content-Type", "application/samlmetadata+xml")
	resp, body, err := do(adm.http, "admin saml provider", req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return &OpError{Step: "admin saml provider", Status: resp.StatusCode, Body: clip(body)}
	}
	return nil
}

// loadSAML reads nhsid's IdP metadata and builds the SP for a run.
func (sh *shared) loadSAML(ctx context.Context) error {
	if sh.st.SAML == nil {
		return errors.New("loadgen: the state has no SAML provider (re-run setup)")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sh.st.Issuer+"/saml/metadata", nil)
	_, body, err := do(sh.api, "saml metadata", req)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	idp, err := samlsp.ParseMetadata(body)
	if err != nil {
		return fmt.Errorf("loadgen: saml metadata: %w", err)
	}
	for _, d := range idp.IDPSSODescriptors {
		for _, s := range d.SingleSignOnServices {
			if err := CheckLoopback(s.Location); err != nil {
				return err
			}
		}
	}
	sh.sp, err = sh.st.SAML.serviceProvider(idp)
	return err
}

var (
	reFormAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	reSAMLResp   = regexp.MustCompile(`name="SAMLResponse" value="([^"]*)"`)
)

// samlSSO is one SP-initiated sign-in with a fresh browser: AuthnRequest
// (redirect binding) → sign-in ceremony → (role choice) → the POST form
// with the signed response, which the SP verifies.
func (c *vclient) samlSSO(ctx context.Context) error {
	u, err := c.takeUser(ctx)
	if err != nil {
		return err
	}
	defer c.giveUser(u)
	sp := c.sh.sp
	ar, err := sp.MakeAuthenticationRequest(sp.GetSSOBindingLocation(crewjam.HTTPRedirectBinding), crewjam.HTTPRedirectBinding, crewjam.HTTPPostBinding)
	if err != nil {
		return &OpError{Step: "saml/request", Err: err}
	}
	start, err := ar.Redirect(randString(8), sp)
	if err != nil {
		return &OpError{Step: "saml/request", Err: err}
	}
	b := c.userBrowser(u)
	loc, err := c.follow(ctx, b, "saml/sso", start.String())
	if err != nil {
		return err
	}
	if loc.Path != "/login" {
		return &OpError{Step: "saml/sso", Status: 200, Err: fmt.Errorf("expected /login, got %s", loc.Path)}
	}
	redirect, err := c.ceremony(ctx, b, u, loc)
	if err != nil {
		return err
	}
	loc, err = c.follow(ctx, b, "saml/resume", redirect)
	if err != nil {
		return err
	}
	if loc.Path == "/select-role" {
		if loc, err = c.selectRole(ctx, b, loc); err != nil {
			return err
		}
	}
	page := c.page
	act, val := reFormAction.FindSubmatch(page), reSAMLResp.FindSubmatch(page)
	if act == nil || val == nil || html.UnescapeString(string(act[1])) != c.sh.st.SAML.ACS {
		return &OpError{Step: "saml/post-page", Status: 200, Err: errors.New("no SAMLResponse form for the ACS"), Body: clip(page)}
	}
	raw, err := base64.StdEncoding.DecodeString(html.UnescapeString(string(val[1])))
	if err != nil {
		return &OpError{Step: "saml/response", Status: 200, Err: err}
	}
	if _, err := sp.ParseXMLResponse(raw, []string{ar.ID}, sp.AcsURL); err != nil {
		var ie *crewjam.InvalidResponseError
		if errors.As(err, &ie) {
			err = fmt.Errorf("%w: %v", err, ie.PrivateErr)
		}
		return &OpError{Step: "saml/response", Status: 200, Code: "invalid", Err: err}
	}
	c.keepDevice(u, b)
	return nil
}
