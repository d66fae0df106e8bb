package saml

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"time"

	crewjam "github.com/crewjam/saml"
)

// NameIDPersistent is the only NameID format nhsid asserts: the person's uid.
const NameIDPersistent = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

// BuildMetadata renders the IdP metadata for entityID/baseURL with every
// certificate in certs as a signing key (all of them during a rotation),
// valid until now+validity.
func BuildMetadata(baseURL string, certs []*x509.Certificate, now time.Time, validity time.Duration) ([]byte, error) {
	var keys []crewjam.KeyDescriptor
	for _, c := range certs {
		keys = append(keys, crewjam.KeyDescriptor{Use: "signing", KeyInfo: crewjam.KeyInfo{X509Data: crewjam.X509Data{
			X509Certificates: []crewjam.X509Certificate{{Data: base64.StdEncoding.EncodeToString(c.Raw)}}}}})
	}
	wantSigned := false
	ed := crewjam.EntityDescriptor{
		EntityID:      baseURL + PathMetadata,
		ValidUntil:    now.UTC().Add(validity).Truncate(time.Second),
		CacheDuration: time.Hour,
		IDPSSODescriptors: []crewjam.IDPSSODescriptor{{
			SSODescriptor: crewjam.SSODescriptor{
				RoleDescriptor: crewjam.RoleDescriptor{
					ProtocolSupportEnumeration: "urn:oasis:names:tc:SAML:2.0:protocol",
					KeyDescriptors:             keys,
				},
				SingleLogoutServices: []crewjam.Endpoint{
					{Binding: crewjam.HTTPRedirectBinding, Location: baseURL + PathSLO},
					{Binding: crewjam.HTTPPostBinding, Location: baseURL + PathSLO},
				},
				NameIDFormats: []crewjam.NameIDFormat{NameIDPersistent},
			},
			WantAuthnRequestsSigned: &wantSigned,
			SingleSignOnServices: []crewjam.Endpoint{
				{Binding: crewjam.HTTPRedirectBinding, Location: baseURL + PathSSO},
				{Binding: crewjam.HTTPPostBinding, Location: baseURL + PathSSO},
			},
		}},
	}
	body, err := xml.MarshalIndent(ed, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render metadata: %w", err)
	}
	return append([]byte(xml.Header), append(body, '\n')...), nil
}

func (h *Handler) handleMetadata(w http.ResponseWriter, r *http.Request) {
	_, _, all, err := h.deps.Signing.SAMLSigning()
	if err != nil {
		h.log.ErrorContext(r.Context(), "saml metadata: signing key", "err", err)
		http.Error(w, "metadata unavailable", http.StatusServiceUnavailable)
		return
	}
	body, err := BuildMetadata(h.cfg.Issuer, all, h.now(), h.cfg.MetadataValidity)
	if err != nil {
		h.log.ErrorContext(r.Context(), "saml metadata", "err", err)
		http.Error(w, "metadata unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Header().Set("Cache-Control", "public, max-age=900")
	_, _ = w.Write(body)
}
