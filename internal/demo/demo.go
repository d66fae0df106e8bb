// Package demo is the demo relying party that `nhsid serve --dev` mounts at
// /demo: a confidential OIDC client (private_key_jwt) that signs in against
// the server itself through the ordinary public endpoints, with
// github.com/coreos/go-oidc and golang.org/x/oauth2 as any RP would, and shows
// the decoded ID token and userinfo. Nothing else imports it.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/web"
)

// ClientID of the demo relying party.
const ClientID = "demo-rp"

// Scopes the demo asks for.
var Scopes = []string{oidc.ScopeOpenID, "profile", "email", "nhsperson", "professionalmemberships", "nationalrbacaccess", "associatedorgs", "organisationalmemberships", "selectedrole"}

// RP is the demo relying party.
type RP struct {
	Issuer string
	Log    *slog.Logger
	key    *ecdsa.PrivateKey
	kid    string

	mu      sync.Mutex
	pending map[string]pending // by state
	results map[string]result  // by random view id
}

type pending struct {
	verifier, nonce string
	at              time.Time
}

type result struct {
	IDToken  string
	Claims   string
	UserInfo string
	at       time.Time
}

// New makes the demo RP with a fresh P-256 key (ES256 client assertions).
func New(issuer string, log *slog.Logger) (*RP, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("demo key: %w", err)
	}
	return &RP{Issuer: strings.TrimRight(issuer, "/"), Log: log, key: k, kid: "demo-rp-1",
		pending: map[string]pending{}, results: map[string]result{}}, nil
}

// JWKS is the public key set to register for the client.
func (rp *RP) JWKS() *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rp.key.PublicKey, KeyID: rp.kid, Algorithm: "ES256", Use: "sig"}}}
}

// RedirectURI is the demo's callback.
func (rp *RP) RedirectURI() string { return rp.Issuer + "/demo/callback" }

// Mount registers /demo routes.
func (rp *RP) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /demo", rp.home)
	mux.HandleFunc("GET /demo/login", rp.login)
	mux.HandleFunc("GET /demo/callback", rp.callback)
}

func randString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (rp *RP) oauth(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	p, err := oidc.NewProvider(ctx, rp.Issuer)
	if err != nil {
		return nil, nil, err
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // private_key_jwt: the assertion goes in the body
	return p, &oauth2.Config{ClientID: ClientID, Endpoint: ep, RedirectURL: rp.RedirectURI(), Scopes: Scopes}, nil
}

func (rp *RP) login(w http.ResponseWriter, r *http.Request) {
	_, oc, err := rp.oauth(r.Context())
	if err != nil {
		rp.fail(w, "Could not read the discovery document", err)
		return
	}
	state, nonce, verifier := randString(), randString(), oauth2.GenerateVerifier()
	rp.mu.Lock()
	for k, v := range rp.pending {
		if time.Since(v.at) > 15*time.Minute {
			delete(rp.pending, k)
		}
	}
	rp.pending[state] = pending{verifier: verifier, nonce: nonce, at: time.Now()}
	rp.mu.Unlock()
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if acr := r.URL.Query().Get("acr"); acr == "AAL3_ANY" || acr == "AAL2_OR_AAL3_ANY" {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", acr))
	}
	http.Redirect(w, r, oc.AuthCodeURL(state, opts...), http.StatusFound)
}

// assertion is a private_key_jwt client assertion for the token endpoint.
func (rp *RP) assertion(aud string) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: rp.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", rp.kid))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(sig).Claims(jwt.Claims{Issuer: ClientID, Subject: ClientID, Audience: jwt.Audience{aud},
		ID: randString(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(2 * time.Minute))}).CompactSerialize()
}

func (rp *RP) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		rp.fail(w, "The sign-in did not complete: "+e+" — "+q.Get("error_description"), nil)
		return
	}
	rp.mu.Lock()
	p, ok := rp.pending[q.Get("state")]
	delete(rp.pending, q.Get("state"))
	rp.mu.Unlock()
	if !ok {
		rp.fail(w, "Unknown or expired sign-in attempt; start again.", nil)
		return
	}
	ctx := r.Context()
	provider, oc, err := rp.oauth(ctx)
	if err != nil {
		rp.fail(w, "Could not read the discovery document", err)
		return
	}
	ass, err := rp.assertion(oc.Endpoint.TokenURL)
	if err != nil {
		rp.fail(w, "Could not sign the client assertion", err)
		return
	}
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier),
		oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
		oauth2.SetAuthURLParam("client_assertion", ass))
	if err != nil {
		rp.fail(w, "The token exchange failed", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: ClientID}).Verify(ctx, raw)
	if err != nil {
		rp.fail(w, "The ID token did not verify", err)
		return
	}
	if idt.Nonce != p.nonce {
		rp.fail(w, "The ID token nonce does not match", nil)
		return
	}
	var claims map[string]any
	_ = idt.Claims(&claims)
	res := result{IDToken: raw, Claims: pretty(claims), at: time.Now()}
	if ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
		var all map[string]any
		_ = ui.Claims(&all)
		res.UserInfo = pretty(all)
	} else {
		res.UserInfo = "userinfo failed: " + err.Error()
	}
	view := randString()
	rp.mu.Lock()
	for k, v := range rp.results {
		if time.Since(v.at) > time.Hour {
			delete(rp.results, k)
		}
	}
	rp.results[view] = res
	rp.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "nhsid_demo_view", Value: view, Path: "/demo", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/demo", http.StatusFound)
}

func pretty(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func (rp *RP) home(w http.ResponseWriter, r *http.Request) {
	var res *result
	if c, err := r.Cookie("nhsid_demo_view"); err == nil {
		rp.mu.Lock()
		if v, ok := rp.results[c.Value]; ok {
			res = &v
		}
		rp.mu.Unlock()
	}
	w.Header().Set("Cache-Control", "no-store")
	_ = web.Render(w, http.StatusOK, "demo", map[string]any{"Result": res, "Issuer": rp.Issuer})
}

func (rp *RP) fail(w http.ResponseWriter, msg string, err error) {
	if err != nil && rp.Log != nil {
		rp.Log.Warn("demo rp", "msg", msg, "err", err.Error())
	}
	_ = web.Render(w, http.StatusBadGateway, "demo", map[string]any{"Error": msg, "Issuer": rp.Issuer})
}

// Fingerprint is a short id of the demo key (shown on the page).
func (rp *RP) Fingerprint() string {
	pub, _ := rp.key.PublicKey.Bytes()
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}
