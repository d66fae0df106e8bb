package idp

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// handleUserinfo serves the scope claims for a valid access token. The
// person is re-read, so changes show at once.
func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		bearerError(w, http.StatusUnauthorized, "invalid_request", "An access token is required.")
		return
	}
	tu, ar, err := p.oauth.IntrospectToken(ctx, token, fosite.AccessToken, NewSession())
	if err != nil {
		if unavailable(err) {
			writeUnavailable(w)
			return
		}
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is not valid.")
		return
	}
	if tu != fosite.AccessToken {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The token is not an access token.")
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		bearerError(w, http.StatusForbidden, "insufficient_scope", "The access token lacks the openid scope.")
		return
	}
	sess, ok := ar.GetSession().(*Session)
	if !ok {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is not valid.")
		return
	}
	person, err := p.deps.People.GetPerson(ctx, sess.GetSubject())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			bearerError(w, http.StatusUnauthorized, "invalid_token", "The account is not available.")
			return
		}
		if unavailable(err) {
			writeUnavailable(w)
			return
		}
		p.log.Log(ctx, apierror.FailureLevel(r), "userinfo: read person", "err", err)
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	if person.Status == policy.StatusClosed {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The account is closed.")
		return
	}
	as := &authn.Session{SID: sess.SID, PersonUID: person.UID, AAL: sess.AAL, AMR: sess.AMR, SelectedRoleID: sess.SelectedRoleID}
	claims, err := p.userClaims(ctx, person, ar.GetGrantedScopes(), as)
	if err != nil {
		p.log.ErrorContext(ctx, "userinfo: claims", "err", err)
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	claims["sub"] = person.UID
	if err := p.auditUserinfo(ctx, ar); err != nil {
		p.log.Log(ctx, apierror.FailureLevel(r), "userinfo: audit", "err", err)
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(claims)
}

func bearerError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`"`)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
