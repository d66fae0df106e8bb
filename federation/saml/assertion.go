package saml

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	"github.com/crewjam/saml/xmlenc"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/web"
)

// Attribute keys, in the order attributes are sent, and their default
// SAML attribute names. Settings.Attributes renames them per SP.
//
//	key                 default name        value
//	uid                 uid                 the person's 12-digit uid
//	given_name          givenName           given name
//	family_name         sn                  family name
//	display_name        displayName         display name (else "given family")
//	email               mail                email address
//	selected_role_id    selectedRoleId      person_roleid of the selected role
//	selected_role_code  selectedRoleCode    its role code (S…:G…:R…)
//	selected_role_name  selectedRoleName    its job role name
//	selected_role_org   selectedRoleOrg     its organisation's ODS code
//	selected_role_org_name selectedRoleOrgName its organisation's name
//	roles               roles               every active role, "person_roleid|ODS code|role code"
//	organisations       organisations       ODS codes of the active roles' organisations
//	aal                 aal                 "2" or "3"
var AttributeKeys = []string{"uid", "given_name", "family_name", "display_name", "email",
	"selected_role_id", "selected_role_code", "selected_role_name", "selected_role_org", "selected_role_org_name",
	"roles", "organisations", "aal"}

var defaultAttributeNames = map[string]string{
	"uid": "uid", "given_name": "givenName", "family_name": "sn", "display_name": "displayName", "email": "mail",
	"selected_role_id": "selectedRoleId", "selected_role_code": "selectedRoleCode", "selected_role_name": "selectedRoleName",
	"selected_role_org": "selectedRoleOrg", "selected_role_org_name": "selectedRoleOrgName",
	"roles": "roles", "organisations": "organisations", "aal": "aal",
}

// DefaultAttributeName returns the default SAML name of an attribute key.
func DefaultAttributeName(key string) string { return defaultAttributeNames[key] }

// attributeName is the name sent to sp for key, or "" to leave it out.
func attributeName(sp ServiceProvider, key string) string {
	if n, ok := sp.Settings.Attributes[key]; ok {
		if n == "-" {
			return ""
		}
		return n
	}
	return defaultAttributeNames[key]
}

// buildAttributes returns the attributes for a person, in AttributeKeys
// order, named for sp. Empty values are left out.
func buildAttributes(sp ServiceProvider, p policy.Person, aal int, positions []policy.Position, role *policy.Position, roleName func(string) string) []crewjam.Attribute {
	values := map[string][]string{}
	add := func(k string, v ...string) {
		for _, s := range v {
			if s != "" {
				values[k] = append(values[k], s)
			}
		}
	}
	add("uid", p.UID)
	add("given_name", p.GivenName)
	add("family_name", p.FamilyName)
	display := p.DisplayName
	if display == "" {
		display = strings.TrimSpace(p.GivenName + " " + p.FamilyName)
	}
	add("display_name", display)
	add("email", p.Email)
	if role != nil {
		add("selected_role_id", role.RoleID)
		add("selected_role_code", role.RoleCode)
		if roleName != nil {
			add("selected_role_name", roleName(role.RoleCode))
		}
		add("selected_role_org", role.OrgCode)
		add("selected_role_org_name", role.OrgName)
	}
	var orgs []string
	for _, ps := range positions {
		add("roles", ps.RoleID+"|"+ps.OrgCode+"|"+ps.RoleCode)
		if !slices.Contains(orgs, ps.OrgCode) {
			orgs = append(orgs, ps.OrgCode)
		}
	}
	sort.Strings(orgs)
	add("organisations", orgs...)
	add("aal", strconv.Itoa(aal))

	var out []crewjam.Attribute
	for _, k := range AttributeKeys {
		name := attributeName(sp, k)
		if name == "" || len(values[k]) == 0 {
			continue
		}
		format := "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
		if strings.Contains(name, ":") {
			format = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
		}
		a := crewjam.Attribute{Name: name, NameFormat: format}
		if name == defaultAttributeNames[k] {
			// A renamed attribute has no FriendlyName: SPs that key
			// attributes by FriendlyName would otherwise miss the rename.
			a.FriendlyName = name
		}
		for _, v := range values[k] {
			a.Values = append(a.Values, crewjam.AttributeValue{Type: "xs:string", Value: v})
		}
		out = append(out, a)
	}
	return out
}

// ClassFor is the AuthnContextClassRef for a session's AAL.
func ClassFor(aal int) string {
	if aal >= authn.AAL3 {
		return ClassAAL3
	}
	return ClassAAL2
}

func newSAMLID() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return "id-" + hex.EncodeToString(b), nil
}

// signingContext signs with RSA-SHA256 and exclusive C14N.
func signingContext(signer crypto.Signer, cert *x509.Certificate) (*dsig.SigningContext, error) {
	sc, err := dsig.NewSigningContext(signer, [][]byte{cert.Raw})
	if err != nil {
		return nil, fmt.Errorf("signing context: %w", err)
	}
	sc.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := sc.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		return nil, fmt.Errorf("signing context: %w", err)
	}
	return sc, nil
}

// signEnveloped signs el and returns the Signature element (to be placed
// after the Issuer, where the schema wants it, by the caller).
func signEnveloped(sc *dsig.SigningContext, el *etree.Element) (*etree.Element, error) {
	signed, err := sc.SignEnveloped(el)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	kids := signed.ChildElements()
	return kids[len(kids)-1], nil
}

// buildResponse makes the signed Response carrying the assertion for a
// session. The assertion comes from crewjam's DefaultAssertionMaker
// (wrapped): nhsid sets the clock, the AuthnContextClassRef from the AAL,
// the validity and its own attributes, and signs per the SP's settings.
func (h *Handler) buildResponse(r *http.Request, sp ServiceProvider, pr *pendingRequest, sess *authn.Session, person policy.Person, positions []policy.Position, role *policy.Position, roleName func(string) string) ([]byte, error) {
	signer, cert, _, err := h.deps.Signing.SAMLSigning()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	now := h.now().UTC()
	entityURL, _ := url.Parse(h.EntityID())
	ttl := h.cfg.AssertionTTL
	idp := &crewjam.IdentityProvider{Signer: signer, Certificate: cert, MetadataURL: *entityURL, ValidDuration: &ttl,
		SignatureMethod: dsig.RSASHA256SignatureMethod}
	areq := &crewjam.IdpAuthnRequest{
		IDP: idp, HTTPRequest: r, Now: now,
		Request:                 crewjam.AuthnRequest{ID: pr.RequestID},
		ServiceProviderMetadata: &crewjam.EntityDescriptor{EntityID: sp.EntityID},
		SPSSODescriptor:         &crewjam.SPSSODescriptor{},
		ACSEndpoint:             &crewjam.IndexedEndpoint{Binding: crewjam.HTTPPostBinding, Location: pr.ACS},
	}
	cs := &crewjam.Session{
		ID: sess.SID, CreateTime: sess.AuthTime.UTC(), ExpireTime: sess.ExpiresAt.UTC(), Index: sess.SID,
		NameID: person.UID, NameIDFormat: NameIDPersistent,
		CustomAttributes: buildAttributes(sp, person, sess.AAL, positions, role, roleName),
	}
	if err := (crewjam.DefaultAssertionMaker{}).MakeAssertion(areq, cs); err != nil {
		return nil, fmt.Errorf("make assertion: %w", err)
	}
	a := areq.Assertion
	if a.ID, err = newSAMLID(); err != nil {
		return nil, err
	}
	a.IssueInstant = now
	a.Issuer.Value = h.EntityID()
	if a.Subject != nil {
		a.Subject.NameID.NameQualifier = h.EntityID()
		for i := range a.Subject.SubjectConfirmations {
			if d := a.Subject.SubjectConfirmations[i].SubjectConfirmationData; d != nil {
				d.Address = "" // the peer address is a proxy's behind a load balancer
				d.NotOnOrAfter = now.Add(ttl)
			}
		}
	}
	if a.Conditions != nil {
		a.Conditions.NotBefore = now.Add(-h.cfg.ClockSkew)
		a.Conditions.NotOnOrAfter = now.Add(ttl)
	}
	for i := range a.AuthnStatements {
		st := &a.AuthnStatements[i]
		st.SubjectLocality = nil
		st.AuthnInstant = sess.AuthTime.UTC()
		st.AuthnContext.AuthnContextClassRef = &crewjam.AuthnContextClassRef{Value: ClassFor(sess.AAL)}
	}

	sc, err := signingContext(signer, cert)
	if err != nil {
		return nil, err
	}
	mode := sp.Settings.Sign
	if mode == "" {
		mode = SignBoth
	}
	assertionEl := a.Element()
	if mode == SignAssertion || mode == SignBoth {
		sig, err := signEnveloped(sc, assertionEl)
		if err != nil {
			return nil, err
		}
		a.Signature = sig
		assertionEl = a.Element()
	}
	if sp.Settings.EncryptAssertions {
		if assertionEl, err = encryptAssertion(sp, assertionEl); err != nil {
			return nil, err
		}
	}
	return h.finishResponse(sc, mode != SignAssertion, pr, crewjam.StatusSuccess, "", assertionEl)
}

// encryptAssertion returns assertionEl (signed already, when the SP's
// settings sign it) as an EncryptedAssertion for the SP's first RSA
// encryption certificate: RSA-OAEP key transport and AES-128-GCM, whose
// authentication leaves no padding oracle (the CBC modes have one).
func encryptAssertion(sp ServiceProvider, assertionEl *etree.Element) (*etree.Element, error) {
	md, err := ParseSPMetadata(sp.MetadataXML)
	if err != nil {
		return nil, fmt.Errorf("encrypt assertion: %w", err)
	}
	if len(md.EncryptionCerts) == 0 {
		return nil, fmt.Errorf("encrypt assertion: the metadata of %s has no RSA encryption certificate", sp.EntityID)
	}
	doc := etree.NewDocument()
	doc.SetRoot(assertionEl.Copy())
	plain, err := doc.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("encrypt assertion: %w", err)
	}
	// rsa-oaep-mgf1p with SHA-1 as its digest: the key transport other
	// SAML software reads (that URI fixes MGF1 to SHA-1, and Go's OAEP
	// uses one hash for both; SHA-1 is sound inside OAEP).
	enc := xmlenc.OAEP()
	enc.DigestMethod = xmlenc.SHA1
	enc.BlockCipher = aes128GCM{}
	data, err := enc.Encrypt(md.EncryptionCerts[0], plain, nil)
	if err != nil {
		return nil, fmt.Errorf("encrypt assertion: %w", err)
	}
	data.CreateAttr("Type", "http://www.w3.org/2001/04/xmlenc#Element")
	el := etree.NewElement("saml:EncryptedAssertion")
	el.CreateAttr("xmlns:saml", "urn:oasis:names:tc:SAML:2.0:assertion")
	el.AddChild(data)
	return el, nil
}

// finishResponse wraps assertionEl (may be nil) in a Response, signs it
// when signResponse, and serialises it.
func (h *Handler) finishResponse(sc *dsig.SigningContext, signResponse bool, pr *pendingRequest, status, subStatus string, assertionEl *etree.Element) ([]byte, error) {
	id, err := newSAMLID()
	if err != nil {
		return nil, err
	}
	resp := &crewjam.Response{
		Destination: pr.ACS, ID: id, InResponseTo: pr.RequestID, IssueInstant: h.now().UTC(), Version: "2.0",
		Issuer: &crewjam.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: h.EntityID()},
		Status: crewjam.Status{StatusCode: crewjam.StatusCode{Value: status}},
	}
	if subStatus != "" {
		resp.Status.StatusCode.StatusCode = &crewjam.StatusCode{Value: subStatus}
	}
	build := func() *etree.Element {
		el := resp.Element()
		if assertionEl != nil {
			el.AddChild(assertionEl.Copy())
		}
		return el
	}
	el := build()
	if signResponse {
		sig, err := signEnveloped(sc, el)
		if err != nil {
			return nil, err
		}
		resp.Signature = sig
		el = build()
	}
	doc := etree.NewDocument()
	doc.SetRoot(el)
	out, err := doc.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("serialise response: %w", err)
	}
	return out, nil
}

// buildStatusResponse is a signed Response without an assertion.
func (h *Handler) buildStatusResponse(_ ServiceProvider, pr *pendingRequest, subStatus string) ([]byte, error) {
	signer, cert, _, err := h.deps.Signing.SAMLSigning()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	sc, err := signingContext(signer, cert)
	if err != nil {
		return nil, err
	}
	return h.finishResponse(sc, true, pr, crewjam.StatusResponder, subStatus, nil)
}

func renderPage(w http.ResponseWriter, status int, name string, data any) error {
	return web.Render(w, status, name, data)
}
