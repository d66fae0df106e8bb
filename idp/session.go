package idp

import (
	"github.com/mohae/deepcopy"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// algHeader is a private header hint telling the key-set signer which
// algorithm to sign with; the signer strips it before signing.
const algHeader = "x-nhsid-alg"

// Session is the fosite session of every nhsid grant. It carries the ID
// token claims (openid.DefaultSession), the RFC 9068 access token claims and
// what userinfo needs about the SSO session.
type Session struct {
	*openid.DefaultSession
	JWTClaims *jwt.JWTClaims `json:"accessToken"`
	JWTHeader *jwt.Headers   `json:"accessTokenHeader"`

	// SID is the SSO session's public id (the "sid" claim).
	SID string `json:"sid,omitempty"`
	// AAL is the session's authenticator assurance level.
	AAL int `json:"aal,omitempty"`
	// AMR is the session's authentication methods.
	AMR []string `json:"amr,omitempty"`
	// SelectedRoleID is the person_roleid chosen for this grant, if any.
	SelectedRoleID string `json:"selected_roleid,omitempty"`
	// ClientID is the client the grant belongs to.
	ClientID string `json:"client_id,omitempty"`
}

// NewSession returns an empty session, as stores need when they read a
// grant back.
func NewSession() *Session {
	return &Session{
		DefaultSession: &openid.DefaultSession{
			Claims:  &jwt.IDTokenClaims{Extra: map[string]any{}},
			Headers: &jwt.Headers{Extra: map[string]any{}},
		},
		JWTClaims: &jwt.JWTClaims{Extra: map[string]any{}},
		JWTHeader: &jwt.Headers{Extra: map[string]any{}},
	}
}

// SessionID returns the SSO session id (stores index tokens by it).
func (s *Session) SessionID() string { return s.SID }

// GetJWTClaims returns the access token claims (RFC 9068).
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	if s.JWTClaims == nil {
		s.JWTClaims = &jwt.JWTClaims{}
	}
	if s.JWTClaims.Extra == nil {
		s.JWTClaims.Extra = map[string]any{}
	}
	return s.JWTClaims
}

// GetJWTHeader returns the access token header, typ at+jwt.
func (s *Session) GetJWTHeader() *jwt.Headers {
	if s.JWTHeader == nil {
		s.JWTHeader = &jwt.Headers{}
	}
	if s.JWTHeader.Extra == nil {
		s.JWTHeader.Extra = map[string]any{}
	}
	s.JWTHeader.Extra["typ"] = "at+jwt"
	return s.JWTHeader
}

// Clone returns a deep copy.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	return deepcopy.Copy(s).(*Session)
}
