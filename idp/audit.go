package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/ory/fosite"
	"github.com/ory/fosite/storage"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// This file turns protocol steps into audit events. Events a response
// depends on (a code or token issued) are recorded before the response is
// written, and a failure to record fails the request; read-only calls
// (introspection, userinfo) use group commit.

func (p *Provider) recorder() audit.Recorder { return audit.OrNop(p.deps.Audit) }

// sessionOf returns the idp session of a request, or an empty one.
func sessionOf(r fosite.Requester) *Session {
	if r != nil {
		if s, ok := r.GetSession().(*Session); ok && s != nil {
			return s
		}
	}
	return &Session{}
}

func clientIDOf(r fosite.Requester) string {
	if r == nil || r.GetClient() == nil {
		return ""
	}
	return r.GetClient().GetID()
}

// auditCode records an authorization code issued to a signed-in person.
func (p *Provider) auditCode(ctx context.Context, ar fosite.AuthorizeRequester, sess *Session) error {
	return p.recorder().Record(ctx, audit.Event{
		Type: audit.CodeIssued, Subject: sess.GetSubject(), Actor: sess.GetSubject(), Client: clientIDOf(ar),
		RoleID: sess.SelectedRoleID, SessionHash: audit.HashSession(sess.SID),
		Detail: map[string]any{"aal": sess.AAL, "scopes": []string(ar.GetGrantedScopes())},
	})
}

// firstUse reports whether the person has no earlier client.first_use
// for the client: one indexed look-up (person, client, type) before each
// code. Only client.first_use is looked for: every code is preceded by
// this check, so a person with a code.issued for the client has a
// client.first_use too, and a busy person's code.issued events would make
// the look-up read them all. It needs a Recorder that is also an
// audit.Querier (audit.Log is); with any other it reports false. A
// concurrent first sign-in to the same client may record it twice. Pairs
// known to have the record skip the look-up (knownUse).
func (p *Provider) firstUse(ctx context.Context, ar fosite.AuthorizeRequester, sess *Session) (bool, error) {
	q, ok := p.deps.Audit.(audit.Querier)
	if !ok {
		return false, nil
	}
	subject, client := sess.GetSubject(), clientIDOf(ar)
	if subject == "" || client == "" {
		return false, nil
	}
	if p.knownUse.has(subject, client) {
		return false, nil
	}
	page, err := q.QueryAudit(ctx, audit.Query{Person: subject, Client: client,
		Types: []audit.Type{audit.ClientFirstUse}, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("first use: %w", err)
	}
	if len(page.Events) > 0 {
		p.knownUse.add(subject, client)
		return false, nil
	}
	return true, nil
}

// auditFirstUse records client.first_use (when firstUse said so).
func (p *Provider) auditFirstUse(ctx context.Context, ar fosite.AuthorizeRequester, sess *Session) error {
	subject := sess.GetSubject()
	return p.recorder().Record(ctx, audit.Event{
		Type: audit.ClientFirstUse, Subject: subject, Actor: subject, Client: clientIDOf(ar),
		RoleID: sess.SelectedRoleID, SessionHash: audit.HashSession(sess.SID),
		Detail: map[string]any{"aal": sess.AAL},
	})
}

// auditRoleAuto records role.selected for a role nhsid picked without
// asking (the only qualifying role); a role the person picked on the
// selection page is recorded by authn.
func (p *Provider) auditRoleAuto(ctx context.Context, client *Client, as *authn.Session, out policy.RoleChoice, chosen, sessionRole string) error {
	if out.RoleID == "" || out.RoleID == chosen || out.RoleID == sessionRole {
		return nil
	}
	return p.recorder().Record(ctx, audit.Event{
		Type: audit.RoleSelected, Subject: as.PersonUID, Actor: as.PersonUID, Client: client.ID,
		RoleID: out.RoleID, SessionHash: audit.HashSession(as.SID),
		Detail: map[string]any{"how": "automatic"},
	})
}

// auditTokenRefused records the reuse of a rotated refresh token (fosite
// then revokes the whole grant). Other refusals are the client's problem
// and are only logged. A failure to record is logged: the response is an
// error already.
func (p *Provider) auditTokenRefused(ctx context.Context, r *http.Request, ar fosite.AccessRequester, err error) {
	if r.PostFormValue("grant_type") != "refresh_token" || !errors.Is(err, fosite.ErrInactiveToken) {
		return
	}
	client := clientIDOf(ar)
	if client == "" {
		client = requestClientID(r)
	}
	if rerr := p.recorder().Record(ctx, audit.Event{
		Type: audit.RefreshReused, Outcome: audit.Denied, Client: client, Actor: client,
		Subject: sessionOf(ar).GetSubject(), Detail: map[string]any{"grant_revoked": true},
	}); rerr != nil {
		p.log.ErrorContext(ctx, "audit refresh reuse", "err", rerr)
	}
}

// revokeGrant revokes the access and refresh tokens of a grant (a request
// id) outside any transaction, and reports whether both revocations held.
func (p *Provider) revokeGrant(ctx context.Context, requestID string) bool {
	if requestID == "" {
		return false
	}
	aerr := p.deps.Store.RevokeAccessToken(ctx, requestID)
	rerr := p.deps.Store.RevokeRefreshToken(ctx, requestID)
	if err := errors.Join(aerr, rerr); err != nil {
		p.log.ErrorContext(ctx, "revoke the grant of a reused code", "err", err)
		return false
	}
	return true
}

// auditCodeReused records a token request that presented an authorization
// code already spent: a sign that the code leaked, or a client retrying.
// concurrent tells a reuse racing the first exchange from a later one.
func (p *Provider) auditCodeReused(ctx context.Context, r *http.Request, ar fosite.AccessRequester, revoked, concurrent bool) {
	client := clientIDOf(ar)
	if client == "" {
		client = requestClientID(r)
	}
	if err := p.recorder().Record(ctx, audit.Event{
		Type: audit.CodeReused, Outcome: audit.Denied, Client: client, Actor: client,
		Subject: sessionOf(ar).GetSubject(), Detail: map[string]any{"grant_revoked": revoked, "concurrent": concurrent},
	}); err != nil {
		p.log.ErrorContext(ctx, "audit code reuse", "err", err)
	}
}

// requestClientID is the client id a request names (basic auth or form);
// for events only, never for authentication.
func requestClientID(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		return id
	}
	return r.PostFormValue("client_id")
}

// auditIntrospection records an introspection call (grouped).
func (p *Provider) auditIntrospection(ctx context.Context, r *http.Request, ir fosite.IntrospectionResponder) error {
	e := audit.Event{Type: audit.Introspection, Client: requestClientID(r), Actor: requestClientID(r)}
	if ir != nil {
		e.Detail = map[string]any{"active": ir.IsActive()}
		if ir.IsActive() && ir.GetAccessRequester() != nil {
			ar := ir.GetAccessRequester()
			sess := sessionOf(ar)
			e.Subject, e.RoleID = sess.GetSubject(), sess.SelectedRoleID
			e.Detail["token_client"] = clientIDOf(ar)
			e.Detail["token_type"] = string(ir.GetTokenUse())
		}
	}
	return p.recorder().RecordGrouped(ctx, e)
}

// auditUserinfo records a userinfo call (grouped).
func (p *Provider) auditUserinfo(ctx context.Context, ar fosite.Requester) error {
	sess := sessionOf(ar)
	return p.recorder().RecordGrouped(ctx, audit.Event{
		Type: audit.Userinfo, Subject: sess.GetSubject(), Client: clientIDOf(ar), Actor: clientIDOf(ar),
		RoleID: sess.SelectedRoleID, SessionHash: audit.HashSession(sess.SID),
		Detail: map[string]any{"scopes": []string(ar.GetGrantedScopes())},
	})
}

// auditRevoke records a revocation request.
func (p *Provider) auditRevoke(ctx context.Context, r *http.Request, err error) error {
	e := audit.Event{Type: audit.TokenRevoked, Client: requestClientID(r), Actor: requestClientID(r),
		Detail: map[string]any{"token_type_hint": r.PostFormValue("token_type_hint")}}
	if err != nil {
		e.Outcome = audit.Failure
		e.Detail["error"] = fosite.ErrorToRFC6749Error(err).ErrorField
	}
	return p.recorder().Record(ctx, e)
}

// auditClientRegistered records a new client (never its secret) and who
// registered it, when known.
func (p *Provider) auditClientRegistered(ctx context.Context, actor string, c *Client) error {
	return p.recorder().Record(ctx, audit.Event{
		Type: audit.ClientRegistered, Actor: actor, Client: c.ID,
		Detail: map[string]any{"name": c.Name, "redirect_uris": c.RedirectURIs, "grant_types": c.GrantTypes,
			"auth_method": c.TokenEndpointAuthMethod, "required_aal": c.RequiredAAL},
	})
}

// auditKeyRotated records a new signing key.
func (p *Provider) auditKeyRotated(ctx context.Context, k SigningKey) error {
	return p.recorder().Record(ctx, audit.Event{
		Type: audit.KeyRotated, Actor: "system",
		Detail: map[string]any{"kid": k.KID, "alg": k.Alg, "active_at": k.ActiveAt.UTC().Format("2006-01-02T15:04:05Z")},
	})
}

// tokenAuditStore is the fosite storage with token.issued / token.refreshed
// recorded in CreateAccessTokenSession: for the authorization code and
// refresh grants fosite runs that inside its transaction, so the event
// commits (or rolls back) together with the tokens, before the response.
type tokenAuditStore struct {
	Store
	p *Provider
}

func (s tokenAuditStore) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	if err := s.Store.CreateAccessTokenSession(ctx, signature, req); err != nil {
		return err
	}
	return s.p.auditAccessToken(ctx, req)
}

type tokenAuditStoreTx struct {
	tokenAuditStore
	storage.Transactional
}

// withTokenAudit wraps the fosite storage s (keeping its transactions).
func withTokenAudit(s Store, p *Provider) Store {
	a := tokenAuditStore{Store: s, p: p}
	if tx, ok := s.(storage.Transactional); ok {
		return tokenAuditStoreTx{a, tx}
	}
	return a
}

// auditAccessToken records an access token issued for req.
func (p *Provider) auditAccessToken(ctx context.Context, req fosite.Requester) error {
	sess := sessionOf(req)
	typ, grant := audit.TokenIssued, "authorization_code"
	if ar, ok := req.(fosite.AccessRequester); ok {
		switch {
		case ar.GetGrantTypes().ExactOne("refresh_token"):
			typ, grant = audit.TokenRefreshed, "refresh_token"
		case ar.GetGrantTypes().ExactOne("client_credentials"):
			grant = "client_credentials"
		}
	}
	subject := sess.GetSubject()
	if grant == "client_credentials" {
		subject = ""
	}
	return p.recorder().Record(ctx, audit.Event{
		Type: typ, Subject: subject, Actor: clientIDOf(req), Client: clientIDOf(req),
		RoleID: sess.SelectedRoleID, SessionHash: audit.HashSession(sess.SID),
		Detail: map[string]any{"grant_type": grant, "aal": sess.AAL,
			"scopes": []string(req.GetGrantedScopes()), "request": req.GetID()},
	})
}

// newAccessResponse is NewAccessResponse, with the client_credentials
// grant's writes made atomic (fosite opens no transaction for it), so that
// the token and its audit event commit together with one commit: in one
// write pipeline where the store offers it (a single round trip), else in
// one transaction. The other grants open their own transaction inside
// fosite.
func (p *Provider) newAccessResponse(ctx context.Context, ar fosite.AccessRequester) (fosite.AccessResponder, error) {
	if p.deps.Audit == nil || !ar.GetGrantTypes().ExactOne("client_credentials") {
		return p.oauth.NewAccessResponse(ctx, ar)
	}
	if _, ok := p.deps.Store.(store.WritePipeliner); ok {
		wctx, send, err := store.BeginWrites(ctx, p.deps.Store)
		if err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
		resp, err := p.oauth.NewAccessResponse(wctx, ar)
		if err != nil {
			return nil, err // nothing was sent, so nothing was written
		}
		if err := send(wctx); err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
		return resp, nil
	}
	tx, ok := p.deps.Store.(storage.Transactional)
	if !ok {
		return p.oauth.NewAccessResponse(ctx, ar)
	}
	tctx, err := tx.BeginTX(ctx)
	if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	resp, err := p.oauth.NewAccessResponse(tctx, ar)
	if err != nil {
		_ = tx.Rollback(tctx)
		return nil, err
	}
	if err := tx.Commit(tctx); err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	return resp, nil
}
