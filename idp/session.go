package idp

import (
	"encoding/json"
	"time"

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

// ForClient makes s the session of a client_credentials token: the
// client is its subject, with no person and no SSO session.
func (s *Session) ForClient(clientID string) {
	s.Subject = clientID
	s.ClientID = clientID
	s.JWTClaims.Subject = clientID
	s.JWTClaims.Extra["client_id"] = clientID
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

// The stored form of a session leaves out what is empty. fosite's claim
// types have no omitempty tags, so the default encoding wrote every zero
// time and empty string of the ID token and access token claims: 1.2 KB
// per token row, most of it "0001-01-01T00:00:00Z", decoded again on
// every introspection and parsed by PostgreSQL (jsonb) on every insert
// (docs/performance.md, round 4). The field names are unchanged, so rows
// written either way decode the same: a field left out keeps the value
// NewSession gave it.
//
// idTokenClaimsJSON and jwtClaimsJSON must match fosite's structs field
// for field: the conversions below do not compile otherwise, so a field
// added to fosite cannot be dropped silently.
type idTokenClaimsJSON struct {
	JTI                                 string         `json:"jti,omitempty"`
	Issuer                              string         `json:"iss,omitempty"`
	Subject                             string         `json:"sub,omitempty"`
	Audience                            []string       `json:"aud,omitempty"`
	Nonce                               string         `json:"nonce,omitempty"`
	ExpiresAt                           time.Time      `json:"exp,omitzero"`
	IssuedAt                            time.Time      `json:"iat,omitzero"`
	RequestedAt                         time.Time      `json:"rat,omitzero"`
	AuthTime                            time.Time      `json:"auth_time,omitzero"`
	AccessTokenHash                     string         `json:"at_hash,omitempty"`
	AuthenticationContextClassReference string         `json:"acr,omitempty"`
	AuthenticationMethodsReferences     []string       `json:"amr,omitempty"`
	CodeHash                            string         `json:"c_hash,omitempty"`
	Extra                               map[string]any `json:"ext,omitempty"`
}

type jwtClaimsJSON struct {
	Subject    string                `json:",omitempty"`
	Issuer     string                `json:",omitempty"`
	Audience   []string              `json:",omitempty"`
	JTI        string                `json:",omitempty"`
	IssuedAt   time.Time             `json:",omitzero"`
	NotBefore  time.Time             `json:",omitzero"`
	ExpiresAt  time.Time             `json:",omitzero"`
	Scope      []string              `json:",omitempty"`
	Extra      map[string]any        `json:",omitempty"`
	ScopeField jwt.JWTScopeFieldEnum `json:",omitzero"`
}

type headersJSON struct {
	Extra map[string]any `json:"extra,omitempty"`
}

type sessionJSON struct {
	Claims         *idTokenClaimsJSON             `json:"id_token_claims,omitempty"`
	Headers        *headersJSON                   `json:"headers,omitempty"`
	ExpiresAt      map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	Username       string                         `json:"username,omitempty"`
	Subject        string                         `json:"subject,omitempty"`
	JWTClaims      *jwtClaimsJSON                 `json:"accessToken,omitempty"`
	JWTHeader      *headersJSON                   `json:"accessTokenHeader,omitempty"`
	SID            string                         `json:"sid,omitempty"`
	AAL            int                            `json:"aal,omitempty"`
	AMR            []string                       `json:"amr,omitempty"`
	SelectedRoleID string                         `json:"selected_roleid,omitempty"`
	ClientID       string                         `json:"client_id,omitempty"`
}

// EncodeSession is the stored form of a grant's session: the compact form
// for a *Session, written without the second pass json.Marshal makes over
// a MarshalJSON result; JSON for any other session type.
func EncodeSession(s fosite.Session) ([]byte, error) {
	if ns, ok := s.(*Session); ok && ns != nil {
		return json.Marshal(ns.stored())
	}
	return json.Marshal(s)
}

// MarshalJSON writes the compact stored form.
func (s *Session) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.stored())
}

func (s *Session) stored() sessionJSON {
	out := sessionJSON{
		JWTClaims:      (*jwtClaimsJSON)(s.JWTClaims),
		JWTHeader:      (*headersJSON)(s.JWTHeader),
		SID:            s.SID,
		AAL:            s.AAL,
		AMR:            s.AMR,
		SelectedRoleID: s.SelectedRoleID,
		ClientID:       s.ClientID,
	}
	if d := s.DefaultSession; d != nil {
		out.Claims = (*idTokenClaimsJSON)(d.Claims)
		out.Headers = (*headersJSON)(d.Headers)
		out.ExpiresAt = d.ExpiresAt
		out.Username = d.Username
		out.Subject = d.Subject
	}
	return out
}
