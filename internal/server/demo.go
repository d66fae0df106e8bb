package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/demo"
	"github.com/nhsid/nhsid/policy"
)

// DemoInfo is what `serve --dev` seeded and prints.
type DemoInfo struct {
	OrgCode    string
	PersonUID  string
	InviteURL  string
	AdminToken string
	// SPAClientID is a public PKCE client with redirect <issuer>/demo/spa.
	SPAClientID string
	RPClientID  string
}

// seedDemo creates the demo organisation, clinician, clients and the /demo
// relying party, and issues an enrolment invite.
func (s *Server) seedDemo(ctx context.Context, mux *http.ServeMux) error {
	info := &DemoInfo{OrgCode: "X26", RPClientID: demo.ClientID, SPAClientID: "demo-spa"}
	if s.cfg.Admin.BootstrapToken == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		s.cfg.Admin.BootstrapToken = hex.EncodeToString(b)
		s.Admin.BootstrapToken = s.cfg.Admin.BootstrapToken
	}
	info.AdminToken = s.cfg.Admin.BootstrapToken

	if _, err := s.Store.GetOrganisation(ctx, info.OrgCode); err != nil {
		if _, err := s.Policy.CreateOrganisation(ctx, policy.Organisation{Code: info.OrgCode, Name: "NHS Demo Trust"}); err != nil {
			return err
		}
	}
	p, err := s.Policy.CreatePerson(ctx, policy.Person{
		Title: "Dr", GivenName: "Ada", FamilyName: "Demo", Email: "ada.demo@example.nhs.uk",
		IDAssuranceLevel: 3, Registrations: map[string]string{"gmc": "7123456"},
	})
	if err != nil {
		return err
	}
	info.PersonUID = p.UID
	_, inviteURL, _, err := s.Authn.IssueInvite(ctx, p.UID, "dev-seed")
	if err != nil {
		return err
	}
	info.InviteURL = inviteURL

	rp, err := demo.New(s.cfg.Issuer, s.log)
	if err != nil {
		return err
	}
	rp.Mount(mux)
	scope := "openid profile email nhsperson professionalmemberships nationalrbacaccess associatedorgs organisationalmemberships selectedrole offline_access"
	clients := []*idp.Client{
		{ID: demo.ClientID, Name: "Demo relying party", RedirectURIs: []string{rp.RedirectURI()},
			GrantTypes: []string{"authorization_code", "refresh_token"}, Scope: scope,
			TokenEndpointAuthMethod: "private_key_jwt", TokenEndpointAuthSigningAlg: "ES256", JWKS: rp.JWKS()},
		{ID: info.SPAClientID, Name: "Demo single-page app", RedirectURIs: []string{s.cfg.Issuer + "/demo/spa"},
			GrantTypes: []string{"authorization_code"}, Scope: scope, TokenEndpointAuthMethod: "none"},
	}
	for _, c := range clients {
		if _, err := s.IDP.RegisterClient(ctx, c); err != nil {
			return fmt.Errorf("register %s: %w", c.ID, err)
		}
	}
	s.Demo = info
	return nil
}
