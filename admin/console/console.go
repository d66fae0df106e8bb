// Package console is the Registration Authority web console at /ra/ on the
// public listener. An RA signs in through nhsid itself at AAL3 and must
// hold an active position whose job role carries an ra_level. Every page
// and action calls policy.Service in-process with the signed-in person as
// the policy.Actor, so the RA rules (scope, two-person rule, no
// self-assignment) are enforced on the server by policy.Authority; the
// console only hides what the actor could not do anyway.
//
// Forms carry a csrf_token bound to the SSO session and follow
// POST-redirect-GET: a success redirects with a fixed message code, a
// refusal or invalid input re-renders the page with an error summary.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/web"
)

// Sessions is the part of authn.Service the console needs to find the
// signed-in RA and to start a sign-in flow.
type Sessions interface {
	CurrentSession(r *http.Request) (*authn.Session, error)
	Usable(sess *authn.Session, now time.Time) bool
	TouchSession(ctx context.Context, sess *authn.Session) error
	StartFlow(w http.ResponseWriter, r *http.Request, f authn.Flow) (string, error)
	LoadFlow(r *http.Request, id string) (*authn.Flow, error)
	FinishFlow(ctx context.Context, id string) error
}

// InviteIssuer issues enrolment invites (authn.Service).
type InviteIssuer interface {
	IssueInvite(ctx context.Context, personUID, createdBy string) (code, url string, expiresAt time.Time, err error)
}

// CredentialStore lists and revokes a person's authenticators (authn's
// store; both adapters implement it).
type CredentialStore interface {
	ListCredentials(ctx context.Context, personUID string) ([]authn.Credential, error)
	GetCredential(ctx context.Context, id []byte) (authn.Credential, error)
	UpdateCredential(ctx context.Context, id []byte, fn func(*authn.Credential) error) (authn.Credential, error)
}

// Console serves the RA web console.
type Console struct {
	Sessions    Sessions
	Invites     InviteIssuer
	Policy      *policy.Service
	Credentials CredentialStore
	// Audit records every change; nil records nothing.
	Audit audit.Recorder
	Log   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SecureCookies marks the console's short-lived invite cookie Secure
	// (as authn.Config.SecureCookies).
	SecureCookies bool
	// Risk lists a person's recent sign-in risk decisions with their
	// reasons (authn.Service); nil shows none.
	Risk RiskHistory
	// Lockouts shows and ends a person's lockout after failed sign-ins
	// (ratelimit.Limiter); nil shows no lockout and offers no unlock.
	Lockouts Lockouts
}

// Lockouts is the person lockout the failed-sign-in limiter keeps.
type Lockouts interface {
	Locked(ctx context.Context, personUID string) (bool, time.Time, error)
	Unlock(ctx context.Context, personUID string) error
}

// RiskHistory reads a person's recent sign-in decisions.
type RiskHistory interface {
	RecentRiskDecisions(ctx context.Context, personUID string) ([]policy.RiskDecision, error)
}

// FlowKind is the authn.Flow kind the console starts.
const FlowKind = "ra"

// Mount registers the console's routes on mux.
func (c *Console) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /ra/{$}", c.handleHome)
	mux.HandleFunc("GET /ra", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ra/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /ra/people/new", c.handleNewPerson)
	mux.HandleFunc("POST /ra/people", c.handleCreatePerson)
	mux.HandleFunc("GET /ra/people/{uid}", c.handlePerson)
	mux.HandleFunc("POST /ra/people/{uid}/verification", c.handleVerify)
	mux.HandleFunc("POST /ra/people/{uid}/positions", c.handleAssign)
	mux.HandleFunc("POST /ra/people/{uid}/positions/{id}/end", c.handleEndPosition)
	mux.HandleFunc("POST /ra/people/{uid}/positions/{id}/approve", c.handleApprovePosition)
	mux.HandleFunc("POST /ra/people/{uid}/invites", c.handleInvite)
	mux.HandleFunc("GET /ra/people/{uid}/invite", c.handleShowInvite)
	mux.HandleFunc("POST /ra/people/{uid}/credentials/{id}/revoke", c.handleRevoke)
	mux.HandleFunc("POST /ra/people/{uid}/close", c.handleClose)
	mux.HandleFunc("POST /ra/people/{uid}/unlock", c.handleUnlock)
}

func (c *Console) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Console) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// ra is the signed-in RA of one request.
type ra struct {
	sess  *authn.Session
	actor policy.Actor
	auth  *policy.Authority
	csrf  string
}

// csrfToken binds forms to the session: a MAC under the stored hash of the
// secret session cookie, which only the server and the cookie's holder
// can compute.
func csrfToken(sess *authn.Session) string {
	m := hmac.New(sha256.New, sess.IDHash)
	m.Write([]byte("nhsid ra console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// enter returns the RA for a page view, or starts a sign-in (no usable
// AAL3 session) or shows why access is refused; nil means it answered.
func (c *Console) enter(w http.ResponseWriter, r *http.Request) *ra {
	sess, err := c.Sessions.CurrentSession(r)
	if err != nil {
		c.unavailable(w, r, err)
		return nil
	}
	now := c.now()
	if sess == nil || !c.Sessions.Usable(sess, now) || sess.AAL < authn.AAL3 {
		q := r.URL.Query()
		q.Del("flow")
		resume := r.URL.Path
		if len(q) > 0 {
			resume += "?" + q.Encode()
		}
		loginURL, err := c.Sessions.StartFlow(w, r, authn.Flow{
			Kind: FlowKind, RequestedAt: now.Truncate(time.Second), MinAAL: authn.AAL3, ResumeURL: resume,
		})
		if err != nil {
			c.unavailable(w, r, err)
			return nil
		}
		http.Redirect(w, r, loginURL, http.StatusSeeOther)
		return nil
	}
	if err := c.Sessions.TouchSession(r.Context(), sess); err != nil {
		c.log().Warn("touch session", "err", err)
	}
	if id := r.URL.Query().Get("flow"); id != "" {
		if f, err := c.Sessions.LoadFlow(r, id); err == nil && f.Kind == FlowKind {
			_ = c.Sessions.FinishFlow(r.Context(), f.ID)
		}
	}
	return c.authorise(w, r, sess)
}

// enterPost checks the session, its AAL and the form's CSRF token before
// an action.
func (c *Console) enterPost(w http.ResponseWriter, r *http.Request) *ra {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	sess, err := c.Sessions.CurrentSession(r)
	if err != nil {
		c.unavailable(w, r, err)
		return nil
	}
	if sess == nil || !c.Sessions.Usable(sess, c.now()) || sess.AAL < authn.AAL3 {
		c.errorPage(w, r, http.StatusUnauthorized, "You are signed out",
			"Your session has ended or does not have high assurance. Open the Registration Authority console again to sign in with your smartcard-equivalent security key.")
		return nil
	}
	want := csrfToken(sess)
	got := r.PostFormValue("csrf_token")
	if !hmac.Equal([]byte(want), []byte(got)) {
		c.errorPage(w, r, http.StatusForbidden, "The form has expired",
			"Go back to the Registration Authority console, reload the page and try again.")
		return nil
	}
	return c.authorise(w, r, sess)
}

// authorise computes the person's RA authority; without an active RA
// position the answer is a 403 page.
func (c *Console) authorise(w http.ResponseWriter, r *http.Request, sess *authn.Session) *ra {
	actor := policy.PersonActor(sess.PersonUID)
	auth, err := c.Policy.AuthorityOf(r.Context(), actor)
	if err != nil {
		c.unavailable(w, r, err)
		return nil
	}
	if !auth.IsRA() {
		c.errorPage(w, r, http.StatusForbidden, "You cannot use the Registration Authority console",
			"You need an active Registration Authority role (RA Manager, RA Agent, Sponsor, ID Checker or Local Smartcard Administrator) to use this service. Ask your organisation's Registration Authority if you think you should have one.")
		return nil
	}
	return &ra{sess: sess, actor: actor, auth: auth, csrf: csrfToken(sess)}
}

// securityHeaders are the headers of every console page.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	securityHeaders(w)
	if err := web.Render(w, status, name, data); err != nil {
		c.log().ErrorContext(r.Context(), "render page", "page", name, "err", err)
	}
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, status int, heading, message string) {
	c.render(w, r, status, "error", map[string]any{"Title": heading, "Heading": heading, "Message": message})
}

func (c *Console) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	c.log().ErrorContext(r.Context(), "ra console", "err", err)
	c.errorPage(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
}

// record writes an audit event for a console change.
func (c *Console) record(ctx context.Context, who *ra, object, id, subject, org string, after map[string]any) error {
	detail := map[string]any{"object": object, "id": id, "via": "ra_console"}
	if after != nil {
		detail["after"] = after
	}
	if err := audit.OrNop(c.Audit).Record(ctx, audit.Event{
		Type: audit.AdminChange, Actor: who.actor.Name(), Subject: subject, Org: org, Detail: detail,
	}); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// personURL is the person page, with an optional success message code.
func personURL(uid, done string) string {
	u := "/ra/people/" + url.PathEscape(uid)
	if done != "" {
		u += "?done=" + url.QueryEscape(done)
	}
	return u
}
