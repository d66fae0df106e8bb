package idp

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
)

// Authenticator is what idp needs from authn: the browser's SSO session and
// sign-in flows. *authn.Service implements it.
type Authenticator interface {
	// CurrentSession returns the browser's live SSO session (not ended, not past absolute expiry), or nil, nil when there is none. Idle-expired sessions are returned; check Usable.
	CurrentSession(r *http.Request) (*authn.Session, error)
	// Usable reports whether s may be reused for SSO at now (live and not idle-expired).
	Usable(s *authn.Session, now time.Time) bool
	// StartFlow stores f (filling ID, BindingHash, ExpiresAt), binds it to the browser with a cookie and returns the login page URL ("/login?flow=<id>").
	StartFlow(w http.ResponseWriter, r *http.Request, f authn.Flow) (loginURL string, err error)
	// LoadFlow returns the flow if it exists, is unexpired and is bound to this browser; else an *apierror.Error (invalid_flow / expired_flow).
	LoadFlow(r *http.Request, id string) (*authn.Flow, error)
	// BoundTo reports whether the request's browser-binding cookie is the
	// one whose hash is bindingHash (a flow's BindingHash).
	BoundTo(r *http.Request, bindingHash []byte) bool
	// FinishFlow deletes the flow.
	FinishFlow(ctx context.Context, id string) error
	// TouchSession restarts the session's idle timer (SSO reuse counts as
	// activity).
	TouchSession(ctx context.Context, s *authn.Session) error
}

// Deps are the provider's collaborators.
type Deps struct {
	Store  Store
	People policy.Store
	Authn  Authenticator
	Log    *slog.Logger
	// Now is the clock for idp's own decisions (keys, sessions). fosite
	// itself reads the wall clock.
	Now func() time.Time
	// Ready is the availability gate in front of the token endpoint: when
	// it fails, the endpoint answers 503 temporarily_unavailable instead of
	// letting a store outage surface as invalid_client.
	Ready func(context.Context) error
	// Claims are the scope-claim sources for userinfo; nil means the
	// built-in one (DefaultClaims).
	Claims []ClaimSource
	// Audit records protocol events; nil records nothing.
	Audit audit.Recorder
	// Roles, when set, drives role selection and per-client access rules
	// (allowed roles, required activities). *policy.Service implements it.
	Roles RoleSource
	// Outbound is the guarded client for calls to integrator-supplied URLs
	// (jwks_uri, back-channel logout); nil builds internal/outbound's default.
	Outbound *http.Client
}
