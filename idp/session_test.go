package idp

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// fullSession has every field set, so a field the compact form dropped
// would show.
func fullSession() *Session {
	at := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	s := NewSession()
	s.Claims = &jwt.IDTokenClaims{JTI: "j", Issuer: "https://id.example", Subject: "123456789012",
		Audience: []string{"c1"}, Nonce: "n", ExpiresAt: at, IssuedAt: at.Add(-time.Minute),
		RequestedAt: at.Add(-2 * time.Minute), AuthTime: at.Add(-3 * time.Minute), AccessTokenHash: "ah",
		AuthenticationContextClassReference: "AAL3_ANY", AuthenticationMethodsReferences: []string{"hwk", "mfa"},
		CodeHash: "ch", Extra: map[string]any{"sid": "s1", "nhsid_useruid": "123456789012"}}
	s.Headers = &jwt.Headers{Extra: map[string]any{algHeader: "RS256"}}
	s.ExpiresAt = map[fosite.TokenType]time.Time{fosite.AccessToken: at, fosite.RefreshToken: at.Add(time.Hour)}
	s.Username, s.DefaultSession.Subject = "u", "123456789012"
	s.JWTClaims = &jwt.JWTClaims{Subject: "123456789012", Issuer: "https://id.example", Audience: []string{"a"},
		JTI: "jt", IssuedAt: at, NotBefore: at, ExpiresAt: at.Add(time.Hour), Scope: []string{"openid"},
		Extra: map[string]any{"client_id": "c1"}, ScopeField: jwt.JWTScopeFieldList}
	s.JWTHeader = &jwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
	s.SID, s.AAL, s.AMR, s.SelectedRoleID, s.ClientID = "s1", 3, []string{"hwk"}, "r1", "c1"
	return s
}

func roundTrip(t *testing.T, s *Session) (*Session, []byte) {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got := NewSession()
	if err := json.Unmarshal(raw, got); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return got, raw
}

func TestSessionJSONRoundTrip(t *testing.T) {
	for name, s := range map[string]*Session{"full": fullSession(), "new": NewSession()} {
		t.Run(name, func(t *testing.T) {
			got, raw := roundTrip(t, s)
			if !reflect.DeepEqual(got, s) {
				t.Fatalf("round trip changed the session:\n got %#v\nwant %#v\njson %s", got, s, raw)
			}
			stored, err := EncodeSession(s)
			if err != nil || string(stored) != string(raw) {
				t.Fatalf("EncodeSession = %s, %v; want json.Marshal's %s", stored, err, raw)
			}
		})
	}
}

// TestSessionJSONCompatible: rows written before the compact form (every
// field, zero times included) decode to what the compact form decodes to,
// and the compact form is smaller.
func TestSessionJSONCompatible(t *testing.T) {
	s := fullSession()
	s.Claims.Nonce, s.Claims.CodeHash, s.Claims.ExpiresAt = "", "", time.Time{}
	s.JWTClaims = &jwt.JWTClaims{Extra: map[string]any{"acr": "AAL3_ANY"}}
	// The default encoding of the same session, as older nhsid wrote it.
	type plain struct {
		*openid.DefaultSession
		JWTClaims      *jwt.JWTClaims `json:"accessToken"`
		JWTHeader      *jwt.Headers   `json:"accessTokenHeader"`
		SID            string         `json:"sid,omitempty"`
		AAL            int            `json:"aal,omitempty"`
		AMR            []string       `json:"amr,omitempty"`
		SelectedRoleID string         `json:"selected_roleid,omitempty"`
		ClientID       string         `json:"client_id,omitempty"`
	}
	old, err := json.Marshal(plain{s.DefaultSession, s.JWTClaims, s.JWTHeader, s.SID, s.AAL, s.AMR, s.SelectedRoleID, s.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	fromOld := NewSession()
	if err := json.Unmarshal(old, fromOld); err != nil {
		t.Fatal(err)
	}
	fromNew, compact := roundTrip(t, s)
	if !reflect.DeepEqual(fromOld, fromNew) {
		t.Fatalf("old and compact rows decode differently:\n old %s\n new %s", old, compact)
	}
	if !reflect.DeepEqual(fromNew, s) {
		t.Fatalf("compact round trip changed the session: %s", compact)
	}
	if len(compact) >= len(old)*3/4 {
		t.Errorf("compact form %d bytes, old form %d: expected it well under", len(compact), len(old))
	}
}

func BenchmarkSessionDecode(b *testing.B) {
	raw, err := json.Marshal(fullSession())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := json.Unmarshal(raw, NewSession()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStoredTokenForm: the form a store keeps is what fosite's Sanitize
// with TokenFormAllowList keeps, for every parameter a request may carry.
func TestStoredTokenForm(t *testing.T) {
	form := url.Values{}
	for _, k := range append(append([]string{}, TokenFormAllowList...),
		"grant_type", "response_type", "scope", "client_id", "client_secret", "client_assertion",
		"client_assertion_type", "code_verifier", "code", "refresh_token", "state", "other") {
		form[k] = []string{k + "-value", k + " second & value"}
	}
	for _, f := range []url.Values{form, {}, {"nonce": {""}}, {"code": {"c"}}} {
		want := (&fosite.Request{Form: f}).Sanitize(TokenFormAllowList).GetRequestForm().Encode()
		if got := StoredTokenForm(f); got != want {
			t.Errorf("StoredTokenForm(%v) = %q, want %q", f, got, want)
		}
	}
	if got := StoredTokenForm(form); strings.Contains(got, "secret") || strings.Contains(got, "code_verifier") {
		t.Errorf("a secret is kept: %q", got)
	}
}
