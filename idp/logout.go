package idp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/web"
)

// SessionEnder is what RP-initiated logout needs from authn beyond
// Authenticator; *authn.Service implements it. Without it /oauth2/logout
// answers 501.
type SessionEnder interface {
	// EndSession ends the session and tells every SessionEndListener.
	EndSession(ctx context.Context, sid, reason string) error
	// ClearSessionCookie removes the browser's session cookie.
	ClearSessionCookie(w http.ResponseWriter)
	// CSRFToken is the value a form of this browser's session carries;
	// CheckCSRF checks the posted csrf_token against it.
	CSRFToken(r *http.Request) string
	CheckCSRF(r *http.Request) bool
}

// idTokenHint is what a verified id_token_hint tells.
type idTokenHint struct {
	Subject string
	SID     string
	// Audience is the clients the ID token was issued to.
	Audience []string
}

// verifyIDTokenHint checks the hint's signature with the key named by its
// kid, and its issuer. An expired hint is accepted (OIDC RP-Initiated
// Logout: the RP may log out long after the ID token expired).
func (p *Provider) verifyIDTokenHint(raw string) (*idTokenHint, error) {
	if len(raw) > 16<<10 {
		return nil, fmt.Errorf("id_token_hint too long")
	}
	jws, err := jose.ParseSigned(raw)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("id_token_hint: not a signed JWT")
	}
	h := jws.Signatures[0].Header
	k, ok := p.keyByID(h.KeyID)
	if !ok {
		return nil, fmt.Errorf("id_token_hint: unknown kid %q", h.KeyID)
	}
	if h.Algorithm != k.Alg {
		return nil, fmt.Errorf("id_token_hint: alg %q does not match key", h.Algorithm)
	}
	payload, err := jws.Verify(k.priv.Public())
	if err != nil {
		return nil, fmt.Errorf("id_token_hint: %w", err)
	}
	var c struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Sid string          `json:"sid"`
		Aud json.RawMessage `json:"aud"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("id_token_hint claims: %w", err)
	}
	if c.Iss != p.cfg.Issuer {
		return nil, fmt.Errorf("id_token_hint: issuer %q", c.Iss)
	}
	out := &idTokenHint{Subject: c.Sub, SID: c.Sid}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil && one != "" {
		out.Audience = []string{one}
	} else if err := json.Unmarshal(c.Aud, &out.Audience); err != nil {
		return nil, fmt.Errorf("id_token_hint: aud: %w", err)
	}
	return out, nil
}

// logoutConfirmPage is the data of logout_confirm.html.
type logoutConfirmPage struct {
	Title                 string
	CSRF                  string
	ClientName            string
	ClientID              string
	PostLogoutRedirectURI string
	State                 string
}

// handleLogout is the end_session_endpoint (OIDC RP-Initiated Logout 1.0).
// A request tied to the browser's session by a valid id_token_hint ends it
// at once; anything else asks the person to confirm (a POST with the
// session's csrf_token), so that no third party can sign them out
// silently. Then it redirects to the registered post_logout_redirect_uri
// with state, or shows the signed-out page.
func (p *Provider) handleLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ender, ok := p.deps.Authn.(SessionEnder)
	if !ok {
		http.Error(w, "logout is not available", http.StatusNotImplemented)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		p.logoutError(w, r, http.StatusBadRequest, "The sign-out request is not valid.")
		return
	}
	confirmed := r.Method == http.MethodPost && r.PostForm.Get("confirm") != ""
	if r.Method == http.MethodPost && !confirmed {
		// A cross-site POST carries no SameSite=Lax cookie: continue as a
		// same-site GET, which sees the session.
		http.Redirect(w, r, PathLogout+"?"+r.PostForm.Encode(), http.StatusSeeOther)
		return
	}
	form := r.Form
	if confirmed {
		form = r.PostForm
	}

	var hint *idTokenHint
	if raw := form.Get("id_token_hint"); raw != "" && !confirmed {
		h, err := p.verifyIDTokenHint(raw)
		if err != nil {
			p.log.InfoContext(ctx, "logout: id_token_hint rejected", "err", err)
		} else {
			hint = h
		}
	}
	clientID := form.Get("client_id")
	if hint != nil {
		if clientID != "" && !slices.Contains(hint.Audience, clientID) {
			p.logoutError(w, r, http.StatusBadRequest, "The sign-out request names another application than its id_token_hint.")
			return
		}
		if clientID == "" && len(hint.Audience) > 0 {
			clientID = hint.Audience[0]
		}
	}
	var client *Client
	if clientID != "" {
		fc, err := p.deps.Store.GetClient(ctx, clientID)
		if err != nil {
			p.logoutError(w, r, http.StatusBadRequest, "The application asking to sign you out is not known.")
			return
		}
		client, _ = fc.(*Client)
	}
	redirect := form.Get("post_logout_redirect_uri")
	if redirect != "" && (client == nil || !slices.Contains(client.PostLogoutRedirectURIs, redirect)) {
		p.logoutError(w, r, http.StatusBadRequest, "The address to return to after signing out is not registered for this application.")
		return
	}
	state := form.Get("state")

	sess, err := p.deps.Authn.CurrentSession(r)
	if err != nil {
		p.logoutError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service. Try again later.")
		return
	}
	if sess != nil {
		tied := hint != nil && hint.SID != "" && hint.SID == sess.SID
		if confirmed && !ender.CheckCSRF(r) {
			p.logoutError(w, r, http.StatusForbidden, "The form has expired. Go back to the application and sign out again.")
			return
		}
		if !tied && !confirmed {
			p.renderLogoutConfirm(w, r, ender, client, redirect, state)
			return
		}
		if err := ender.EndSession(ctx, sess.SID, authn.EndRPLogout); err != nil {
			p.log.ErrorContext(ctx, "logout: end session", "err", err)
			p.logoutError(w, r, http.StatusServiceUnavailable, "Sorry, we could not sign you out. Try again.")
			return
		}
	}
	ender.ClearSessionCookie(w)
	p.finishLogout(w, r, redirect, state)
}

// finishLogout redirects to the registered post_logout_redirect_uri (with
// state) or shows the signed-out page.
func (p *Provider) finishLogout(w http.ResponseWriter, r *http.Request, redirect, state string) {
	w.Header().Set("Cache-Control", "no-store")
	if redirect != "" {
		u, err := url.Parse(redirect)
		if err == nil {
			if state != "" {
				q := u.Query()
				q.Set("state", state)
				u.RawQuery = q.Encode()
			}
			code := http.StatusFound
			if r.Method == http.MethodPost {
				code = http.StatusSeeOther
			}
			http.Redirect(w, r, u.String(), code)
			return
		}
	}
	if err := web.Render(w, http.StatusOK, "signed_out", map[string]any{"Title": "You have signed out"}); err != nil {
		p.log.ErrorContext(r.Context(), "render signed out", "err", err)
	}
}

func (p *Provider) renderLogoutConfirm(w http.ResponseWriter, r *http.Request, ender SessionEnder, client *Client, redirect, state string) {
	data := logoutConfirmPage{Title: "Do you want to sign out?", CSRF: ender.CSRFToken(r), PostLogoutRedirectURI: redirect, State: state}
	if client != nil {
		data.ClientID = client.ID
		data.ClientName = client.Name
		if data.ClientName == "" {
			data.ClientName = client.ID
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if err := web.Render(w, http.StatusOK, "logout_confirm", data); err != nil {
		p.log.ErrorContext(r.Context(), "render logout confirmation", "err", err)
	}
}

func (p *Provider) logoutError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	if err := web.Render(w, status, "error", map[string]any{"Title": "Sign out failed", "Heading": "Sign out failed", "Message": msg}); err != nil {
		p.log.ErrorContext(r.Context(), "render logout error", "err", err)
	}
}

// jwksFetcher is fosite's jwks_uri fetcher over the guarded outbound
// client (no retries: a failing jwks_uri fails client authentication).
func jwksFetcher(c *http.Client) fosite.JWKSFetcherStrategy {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = c
	rc.RetryMax = 0
	rc.RetryWaitMax = time.Second
	rc.Logger = nil
	return fosite.NewDefaultJWKSFetcherStrategy(fosite.JWKSFetcherWithHTTPClient(rc))
}
