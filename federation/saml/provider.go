package saml

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	crewjam "github.com/crewjam/saml"
)

// Which parts of a Response are signed (Settings.Sign).
const (
	SignAssertion = "assertion"
	SignResponse  = "response"
	SignBoth      = "both"
)

// AuthnContextClassRef values nhsid asserts and understands.
const (
	ClassAAL2 = "urn:nhsid:aal2"
	ClassAAL3 = "urn:nhsid:aal3"
)

// MaxMetadataBytes bounds an SP's metadata document.
const MaxMetadataBytes = 256 << 10

// Endpoint is an SP endpoint from its metadata.
type Endpoint struct {
	Binding          string `json:"binding"`
	Location         string `json:"location"`
	ResponseLocation string `json:"response_location,omitempty"`
	Index            int    `json:"index,omitempty"`
	IsDefault        bool   `json:"is_default,omitempty"`
}

// Settings are an SP's nhsid-side settings, changed with PATCH.
type Settings struct {
	// Attributes maps an attribute key (see AttributeKeys) to the SAML
	// attribute name sent to this SP; a missing key takes the default
	// name and "-" leaves the attribute out.
	Attributes map[string]string `json:"attributes,omitempty"`
	// MinAAL is the least assurance a session needs for this SP (2 or 3).
	MinAAL int `json:"min_aal"`
	// AllowedRoles, when not empty, are the role codes (full S…:G…:R…
	// codes or R… job role codes) of which the user must hold one.
	AllowedRoles []string `json:"allowed_roles,omitempty"`
	// Sign is SignAssertion, SignResponse or SignBoth (the default).
	Sign string `json:"sign"`
	// SelectRole asks the user to choose a role for this SP.
	SelectRole bool `json:"select_role"`
	// EncryptAssertions sends the assertion as an EncryptedAssertion
	// (RSA-OAEP key transport to the SP's encryption certificate,
	// AES-128-GCM content), signed before it is encrypted. It needs an
	// RSA encryption certificate in the SP's metadata.
	EncryptAssertions bool `json:"encrypt,omitempty"`
}

// ServiceProvider is a registered SAML SP.
type ServiceProvider struct {
	// ID is nhsid's id of the registration.
	ID       string `json:"id"`
	EntityID string `json:"entity_id"`
	// MetadataXML is the SP's metadata as registered.
	MetadataXML []byte     `json:"-"`
	ACS         []Endpoint `json:"acs"`
	SLO         []Endpoint `json:"slo,omitempty"`
	Settings    Settings   `json:"settings"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Participant records that a session sent an assertion to an SP, for
// single logout.
type Participant struct {
	SID          string
	EntityID     string
	NameID       string
	SessionIndex string
	CreatedAt    time.Time
}

// Store persists SPs, seen request IDs and session participants.
type Store interface {
	// CreateServiceProvider fails with store.ErrExists for a duplicate ID
	// or entity id.
	CreateServiceProvider(ctx context.Context, sp ServiceProvider) error
	// GetServiceProvider fails with store.ErrNotFound.
	GetServiceProvider(ctx context.Context, id string) (ServiceProvider, error)
	// GetServiceProviderByEntityID fails with store.ErrNotFound.
	GetServiceProviderByEntityID(ctx context.Context, entityID string) (ServiceProvider, error)
	// UpdateServiceProvider applies fn inside one transaction; the ID and
	// entity id cannot change.
	UpdateServiceProvider(ctx context.Context, id string, fn func(*ServiceProvider) error) (ServiceProvider, error)
	// ListServiceProviders returns SPs ordered by ID after the cursor.
	ListServiceProviders(ctx context.Context, after string, limit int) ([]ServiceProvider, error)
	// RememberRequestID records a request ID from an SP until expiresAt.
	// It fails with store.ErrExists when the same (entityID, requestID)
	// is recorded and unexpired at now: a replay.
	RememberRequestID(ctx context.Context, entityID, requestID string, expiresAt, now time.Time) error
	// AddParticipant records (or refreshes) that session SID signed in to
	// an SP.
	AddParticipant(ctx context.Context, p Participant) error
	// ListParticipants returns the SPs of a session, oldest first.
	ListParticipants(ctx context.Context, sid string) ([]Participant, error)
}

// ErrInvalidMetadata is returned (wrapped) for metadata that cannot be
// registered.
var ErrInvalidMetadata = errors.New("invalid SAML metadata")

func invalidMetadata(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidMetadata, fmt.Sprintf(format, args...))
}

// SPMetadata is what nhsid reads from an SP's metadata.
type SPMetadata struct {
	EntityID string
	ACS      []Endpoint
	SLO      []Endpoint
	// SigningCerts are the certificates the SP signs requests with.
	SigningCerts []*x509.Certificate
	// EncryptionCerts are the SP's RSA certificates for encryption (a
	// KeyDescriptor with use="encryption", or with no use, which SAML
	// metadata reads as both).
	EncryptionCerts []*x509.Certificate
	// AuthnRequestsSigned is the SP's promise to sign its AuthnRequests.
	AuthnRequestsSigned bool
}

// ParseSPMetadata parses and checks an SP's metadata: one EntityDescriptor
// with one SPSSODescriptor, http(s) endpoints, at least one ACS endpoint on
// the HTTP-POST binding, and parseable certificates. DTDs are refused.
func ParseSPMetadata(raw []byte) (*SPMetadata, error) {
	if len(raw) > MaxMetadataBytes {
		return nil, invalidMetadata("larger than %d bytes", MaxMetadataBytes)
	}
	if _, err := parseXML(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMetadata, err)
	}
	var ed crewjam.EntityDescriptor
	if err := xml.Unmarshal(raw, &ed); err != nil {
		return nil, invalidMetadata("not an EntityDescriptor: %v", err)
	}
	if ed.EntityID == "" || len(ed.EntityID) > 1024 {
		return nil, invalidMetadata("entityID missing or too long")
	}
	if len(ed.SPSSODescriptors) != 1 {
		return nil, invalidMetadata("want exactly one SPSSODescriptor, found %d", len(ed.SPSSODescriptors))
	}
	d := ed.SPSSODescriptors[0]
	out := &SPMetadata{EntityID: ed.EntityID, AuthnRequestsSigned: d.AuthnRequestsSigned != nil && *d.AuthnRequestsSigned}
	for _, e := range d.AssertionConsumerServices {
		if err := checkEndpointURL(e.Location); err != nil {
			return nil, invalidMetadata("AssertionConsumerService %q: %v", e.Location, err)
		}
		out.ACS = append(out.ACS, Endpoint{Binding: e.Binding, Location: e.Location, Index: e.Index,
			IsDefault: e.IsDefault != nil && *e.IsDefault, ResponseLocation: deref(e.ResponseLocation)})
	}
	postACS := false
	for _, e := range out.ACS {
		postACS = postACS || e.Binding == crewjam.HTTPPostBinding
	}
	if !postACS {
		return nil, invalidMetadata("no AssertionConsumerService with the HTTP-POST binding")
	}
	for _, e := range d.SingleLogoutServices {
		if err := checkEndpointURL(e.Location); err != nil {
			return nil, invalidMetadata("SingleLogoutService %q: %v", e.Location, err)
		}
		if e.ResponseLocation != "" {
			if err := checkEndpointURL(e.ResponseLocation); err != nil {
				return nil, invalidMetadata("SingleLogoutService ResponseLocation %q: %v", e.ResponseLocation, err)
			}
		}
		out.SLO = append(out.SLO, Endpoint{Binding: e.Binding, Location: e.Location, ResponseLocation: e.ResponseLocation})
	}
	for _, kd := range d.KeyDescriptors {
		if kd.Use == "" || kd.Use == "encryption" {
			for _, c := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Data), ""))
				if err != nil {
					continue // checked below when it is also for signing; unusable for encryption
				}
				if cert, err := x509.ParseCertificate(der); err == nil {
					if _, ok := cert.PublicKey.(*rsa.PublicKey); ok {
						out.EncryptionCerts = append(out.EncryptionCerts, cert)
					}
				}
			}
		}
		if kd.Use != "" && kd.Use != "signing" {
			continue
		}
		for _, c := range kd.KeyInfo.X509Data.X509Certificates {
			der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Data), ""))
			if err != nil {
				return nil, invalidMetadata("certificate: %v", err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, invalidMetadata("certificate: %v", err)
			}
			out.SigningCerts = append(out.SigningCerts, cert)
		}
	}
	if out.AuthnRequestsSigned && len(out.SigningCerts) == 0 {
		return nil, invalidMetadata("AuthnRequestsSigned is true but there is no signing certificate")
	}
	sort.SliceStable(out.ACS, func(i, j int) bool { return out.ACS[i].Index < out.ACS[j].Index })
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkEndpointURL accepts absolute http and https URLs only: an ACS URL
// ends up as a form action, so javascript: or data: would be script.
func checkEndpointURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("scheme must be https or http")
	}
	if u.Host == "" || u.User != nil {
		return errors.New("must be absolute, without user info")
	}
	return nil
}

// NewServiceProvider builds a registration from metadata with default
// settings.
func NewServiceProvider(id string, raw []byte, now time.Time) (ServiceProvider, error) {
	md, err := ParseSPMetadata(raw)
	if err != nil {
		return ServiceProvider{}, err
	}
	return ServiceProvider{
		ID: id, EntityID: md.EntityID, MetadataXML: bytes.Clone(raw), ACS: md.ACS, SLO: md.SLO,
		Settings: Settings{MinAAL: 2, Sign: SignBoth}, CreatedAt: now, UpdatedAt: now,
	}, nil
}

// Validate checks settings.
func (s Settings) Validate() error {
	var problems []string
	if s.MinAAL != 0 && s.MinAAL != 2 && s.MinAAL != 3 {
		problems = append(problems, "min_aal must be 2 or 3")
	}
	switch s.Sign {
	case "", SignAssertion, SignResponse, SignBoth:
	default:
		problems = append(problems, "sign must be assertion, response or both")
	}
	for k, v := range s.Attributes {
		if _, ok := defaultAttributeNames[k]; !ok {
			problems = append(problems, fmt.Sprintf("unknown attribute key %q", k))
		}
		if v == "" || len(v) > 256 || strings.ContainsAny(v, "<>&\"'") {
			problems = append(problems, fmt.Sprintf("attribute %q: name must be 1-256 characters without markup", k))
		}
	}
	for _, r := range s.AllowedRoles {
		if r == "" || len(r) > 64 {
			problems = append(problems, "allowed_roles entries must be role codes")
			break
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid settings: %s", strings.Join(problems, "; "))
	}
	return nil
}
