package saml

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/detach"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/web"
)

// Paths served by Handler.
const (
	PathMetadata     = "/saml/metadata"
	PathSSO          = "/saml/sso"
	PathSSOContinue  = "/saml/sso/continue"
	PathResume       = "/saml/resume"
	PathIdPInitiated = "/saml/idp-initiated"
	PathSLO          = "/saml/slo"
	PathSLOContinue  = "/saml/slo/continue"
)

// Authenticator is what saml needs from authn. *authn.Service implements it.
type Authenticator interface {
	CurrentSession(r *http.Request) (*authn.Session, error)
	Usable(s *authn.Session, now time.Time) bool
	StartFlow(w http.ResponseWriter, r *http.Request, f authn.Flow) (string, error)
	LoadFlow(r *http.Request, id string) (*authn.Flow, error)
	FinishFlow(ctx context.Context, id string) error
	TouchSession(ctx context.Context, s *authn.Session) error
}

// Sessions ends SSO sessions on single logout. authn.SessionStore
// implementations satisfy it.
type Sessions interface {
	GetSessionBySID(ctx context.Context, sid string) (authn.Session, error)
	UpdateSession(ctx context.Context, idHash []byte, fn func(*authn.Session) error) (authn.Session, error)
}

// Pending keeps POSTed requests between the cross-site POST and the
// same-site GET that continues them (authn.ChallengeStore satisfies it).
type Pending interface {
	PutChallenge(ctx context.Context, key string, data []byte, expiresAt time.Time) error
	TakeChallenge(ctx context.Context, key string, now time.Time) ([]byte, error)
}

// People reads people (policy.Store satisfies it).
type People interface {
	GetPerson(ctx context.Context, uid string) (policy.Person, error)
}

// Roles lists a person's active positions and names job roles
// (*policy.Service satisfies it).
type Roles interface {
	ActivePositions(ctx context.Context, uid string) ([]policy.Position, error)
	Catalogue(ctx context.Context) (policy.Catalogue, *policy.Index, error)
}

// Signing gives the IdP's signing key and certificate, and every
// certificate to publish in metadata (*idp.Provider satisfies it).
type Signing interface {
	SAMLSigning() (signer crypto.Signer, cert *x509.Certificate, all []*x509.Certificate, err error)
}

// Config configures Handler. Zero durations take the defaults.
type Config struct {
	// Issuer is nhsid's public base URL; the entity ID is Issuer+PathMetadata.
	Issuer string
	// MaxRequestAge bounds how old an AuthnRequest or LogoutRequest may
	// be (default 5m).
	MaxRequestAge time.Duration
	// ClockSkew is tolerated either way (default 90s).
	ClockSkew time.Duration
	// AssertionTTL is how long an assertion may be used (default 5m).
	AssertionTTL time.Duration
	// MetadataValidity is the validUntil of the IdP metadata (default 48h).
	MetadataValidity time.Duration
}

// Deps are Handler's collaborators. Roles, Audit and Log are optional.
type Deps struct {
	Store    Store
	Pending  Pending
	Sessions Sessions
	Authn    Authenticator
	People   People
	Roles    Roles
	Signing  Signing
	Audit    audit.Recorder
	Log      *slog.Logger
	Now      func() time.Time
}

// Handler is the SAML IdP's HTTP side.
type Handler struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// slo is the back-channel Single Logout sender, once made
	// (slo_backchannel.go).
	slo atomic.Pointer[BackchannelLogout]
}

// New validates cfg and deps.
func New(cfg Config, deps Deps) (*Handler, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("saml: Issuer must be an http(s) URL")
	}
	if deps.Store == nil || deps.Pending == nil || deps.Authn == nil || deps.People == nil || deps.Signing == nil {
		return nil, errors.New("saml: Store, Pending, Authn, People and Signing are required")
	}
	if cfg.MaxRequestAge <= 0 {
		cfg.MaxRequestAge = 5 * time.Minute
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = 90 * time.Second
	}
	if cfg.AssertionTTL <= 0 {
		cfg.AssertionTTL = 5 * time.Minute
	}
	if cfg.MetadataValidity <= 0 {
		cfg.MetadataValidity = 48 * time.Hour
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	deps.Audit = audit.OrNop(deps.Audit)
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, deps: deps, log: log}, nil
}

// Mount registers the SAML endpoints on mux.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathMetadata, h.handleMetadata)
	mux.HandleFunc("GET "+PathSSO, h.handleSSO)
	mux.HandleFunc("POST "+PathSSO, h.handleSSO)
	mux.HandleFunc("GET "+PathSSOContinue, h.handleSSOContinue)
	mux.HandleFunc("GET "+PathResume, h.handleResume)
	mux.HandleFunc("GET "+PathIdPInitiated, h.handleIdPInitiated)
	mux.HandleFunc("GET "+PathSLO, h.handleSLO)
	mux.HandleFunc("POST "+PathSLO, h.handleSLO)
	mux.HandleFunc("GET "+PathSLOContinue, h.handleSLOContinue)
}

// EntityID is the IdP's entity ID (its metadata URL).
func (h *Handler) EntityID() string { return h.url(PathMetadata) }

func (h *Handler) url(path string) string { return h.cfg.Issuer + path }

func (h *Handler) now() time.Time { return h.deps.Now() }

type pageData struct {
	Title, Heading, Message string
	// saml_post
	Action, Field, Value, RelayState string
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Referrer-Policy", "no-referrer")
}

// refuseRequest renders rf as an error page, logs it and records an audit
// event.
func (h *Handler) refuseRequest(w http.ResponseWriter, r *http.Request, rf *refusal, subject string) {
	ctx := r.Context()
	level := slog.LevelInfo
	if rf.Status >= 500 {
		level = apierror.FailureLevel(r)
	}
	attrs := []any{"reason", rf.Reason, "sp", rf.EntityID, "status", rf.Status}
	if rf.Err != nil {
		attrs = append(attrs, "err", rf.Err.Error())
	}
	h.log.Log(ctx, level, "saml request refused", attrs...)
	if rf.Reason != "store" {
		ctx, cancel := detach.Context(ctx) // recorded even if the client has gone
		defer cancel()
		err := h.deps.Audit.Record(ctx, audit.Event{Type: audit.SigninFailure, Outcome: audit.Denied, Subject: subject,
			Client: clip(rf.EntityID, 500), Detail: map[string]any{"protocol": "saml", "reason": rf.Reason}})
		if err != nil {
			h.log.ErrorContext(ctx, "audit saml refusal", "err", err)
		}
	}
	noStore(w)
	if err := web.Render(w, rf.Status, "error", pageData{Title: rf.Heading, Heading: rf.Heading, Message: rf.Message}); err != nil {
		h.log.ErrorContext(ctx, "render error page", "err", err)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func queryUnescape(s string) (string, error) { return url.QueryUnescape(s) }

func unavailable(err error) *refusal {
	return &refusal{Status: http.StatusServiceUnavailable, Heading: "Sign-in is unavailable",
		Message: "Something went wrong on our side. Try again shortly.", Reason: "store", Err: err}
}
