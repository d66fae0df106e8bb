package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/internal/apierror"
)

// SAML service provider registry:
//
//	POST  /admin/v1/saml/providers        body: the SP's metadata XML
//	GET   /admin/v1/saml/providers        ?cursor=&limit=
//	GET   /admin/v1/saml/providers/{id}
//	PATCH /admin/v1/saml/providers/{id}   body: settings JSON (saml.Settings)
func (a *API) mountSAML(mux *http.ServeMux) {
	mux.Handle("POST /admin/v1/saml/providers", a.auth(a.createSAMLProvider))
	mux.Handle("GET /admin/v1/saml/providers", a.auth(a.listSAMLProviders))
	mux.Handle("GET /admin/v1/saml/providers/{id}", a.auth(a.getSAMLProvider))
	mux.Handle("PATCH /admin/v1/saml/providers/{id}", a.auth(a.patchSAMLProvider))
}

func (a *API) samlStore() (saml.Store, error) {
	if a.SAMLProviders == nil {
		return nil, apierror.New(http.StatusNotFound, "not_found", "SAML is not enabled.", nil)
	}
	return a.SAMLProviders, nil
}

func (a *API) samlNow() time.Time {
	if a.Policy != nil && a.Policy.Now != nil {
		return a.Policy.Now()
	}
	return time.Now()
}

// samlProviderOut is an SP as the API shows it, with its metadata.
type samlProviderOut struct {
	saml.ServiceProvider
	MetadataXML string `json:"metadata_xml,omitempty"`
}

func (a *API) createSAMLProvider(w http.ResponseWriter, r *http.Request, who actor) error {
	st, err := a.samlStore()
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, saml.MaxMetadataBytes+1))
	if err != nil {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The body could not be read.", err)
	}
	if len(raw) > saml.MaxMetadataBytes {
		return apierror.New(http.StatusRequestEntityTooLarge, "invalid_request",
			fmt.Sprintf("The metadata is larger than %d bytes.", saml.MaxMetadataBytes), nil)
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("saml provider id: %w", err)
	}
	sp, err := saml.NewServiceProvider("sp_"+hex.EncodeToString(b), raw, a.samlNow().UTC())
	if errors.Is(err, saml.ErrInvalidMetadata) {
		return apierror.New(http.StatusBadRequest, "invalid_metadata", err.Error(), err)
	}
	if err != nil {
		return err
	}
	if err := st.CreateServiceProvider(r.Context(), sp); err != nil {
		return err
	}
	after := asMap(sp.Settings)
	after["entity_id"] = sp.EntityID
	if err := a.auditChange(r.Context(), who, "saml_provider", sp.ID, "", "", nil, after); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, samlProviderOut{ServiceProvider: sp})
}

func (a *API) getSAMLProvider(w http.ResponseWriter, r *http.Request, _ actor) error {
	st, err := a.samlStore()
	if err != nil {
		return err
	}
	sp, err := st.GetServiceProvider(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, samlProviderOut{ServiceProvider: sp, MetadataXML: string(sp.MetadataXML)})
}

func (a *API) listSAMLProviders(w http.ResponseWriter, r *http.Request, _ actor) error {
	st, err := a.samlStore()
	if err != nil {
		return err
	}
	cursor, limit, err := page(r)
	if err != nil {
		return err
	}
	items, err := st.ListServiceProviders(r.Context(), cursor, limit)
	if err != nil {
		return err
	}
	out := list[saml.ServiceProvider]{Items: items}
	if out.Items == nil {
		out.Items = []saml.ServiceProvider{}
	}
	if len(items) == limit {
		out.NextCursor = items[len(items)-1].ID
	}
	return reply(w, http.StatusOK, out)
}

// patchSAMLProvider replaces the fields of the settings present in the
// body: {"min_aal":3,"sign":"assertion","select_role":true,"encrypt":true,
// "allowed_roles":["R8000"],"attributes":{"uid":"urn:oid:0.9.2342.19200300.100.1.1"}}.
func (a *API) patchSAMLProvider(w http.ResponseWriter, r *http.Request, who actor) error {
	st, err := a.samlStore()
	if err != nil {
		return err
	}
	var in struct {
		MinAAL       *int               `json:"min_aal"`
		Sign         *string            `json:"sign"`
		SelectRole   *bool              `json:"select_role"`
		AllowedRoles *[]string          `json:"allowed_roles"`
		Attributes   *map[string]string `json:"attributes"`
		Encrypt      *bool              `json:"encrypt"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	var before saml.Settings
	sp, err := st.UpdateServiceProvider(r.Context(), r.PathValue("id"), func(sp *saml.ServiceProvider) error {
		before = sp.Settings
		s := sp.Settings
		if in.MinAAL != nil {
			s.MinAAL = *in.MinAAL
		}
		if in.Sign != nil {
			s.Sign = *in.Sign
		}
		if in.SelectRole != nil {
			s.SelectRole = *in.SelectRole
		}
		if in.AllowedRoles != nil {
			s.AllowedRoles = *in.AllowedRoles
		}
		if in.Attributes != nil {
			s.Attributes = *in.Attributes
		}
		if in.Encrypt != nil {
			s.EncryptAssertions = *in.Encrypt
		}
		if err := s.Validate(); err != nil {
			return apierror.New(http.StatusBadRequest, "invalid_request", err.Error(), err)
		}
		if s.EncryptAssertions {
			md, err := saml.ParseSPMetadata(sp.MetadataXML)
			if err != nil || len(md.EncryptionCerts) == 0 {
				return apierror.New(http.StatusBadRequest, "invalid_request",
					"encrypt needs an RSA encryption certificate (a KeyDescriptor with use=\"encryption\" or no use) in the SP's metadata", err)
			}
		}
		sp.Settings = s
		sp.UpdatedAt = a.samlNow().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	if err := a.auditChange(r.Context(), who, "saml_provider", sp.ID, "", "", before, sp.Settings); err != nil {
		return err
	}
	return reply(w, http.StatusOK, samlProviderOut{ServiceProvider: sp})
}
