package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/web"
)

// Service is the authentication service: WebAuthn ceremonies, sessions and
// sign-in flows, and the pages that drive them.
type Service struct {
	cfg    Config
	store  Store
	people policy.Store
	log    *slog.Logger
	now    func() time.Time
	rand   io.Reader
	wa     *webauthn.WebAuthn
	policy *assurancePolicy
	ends   listeners // SessionEndListeners (endsession.go)
	audit  audit.Recorder
	// limiter tracks failed sign-ins per person (ratelimit.go).
	limiter *ratelimit.Limiter
	// risk is the contextual sign-in risk engine (risk.go); nil: off.
	risk *Risk
	// completers finish flows by kind in the login finish (complete.go).
	completers map[string]FlowCompleter
	// started answers the first login begin of the flows this process
	// started (started.go).
	started startedFlows
}

// maxBody caps the size of a ceremony request body.
const maxBody = 64 << 10

// New validates cfg (after defaults), loads the attestation trust material
// and returns the service.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authn config: %w", err)
	}
	if deps.Store == nil || deps.People == nil {
		return nil, errors.New("authn: Store and People are required")
	}
	s := &Service{cfg: cfg, store: deps.Store, people: deps.People, log: deps.Log, now: deps.Now, rand: deps.Rand, audit: deps.Audit, limiter: deps.Limiter, risk: deps.Risk}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  cfg.RPID,
		RPDisplayName:         cfg.RPDisplayName,
		RPOrigins:             cfg.RPOrigins,
		AttestationPreference: protocol.PreferDirectAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.ChallengeTTL, TimeoutUVD: cfg.ChallengeTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.ChallengeTTL, TimeoutUVD: cfg.ChallengeTTL},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("authn webauthn: %w", err)
	}
	s.wa = wa
	if s.policy, err = loadAssurancePolicy(cfg); err != nil {
		return nil, fmt.Errorf("authn: %w", err)
	}
	return s, nil
}

// Config returns the effective configuration (defaults applied).
func (s *Service) Config() Config { return s.cfg }

// Mount registers the pages and the JSON ceremony API on mux.
func (s *Service) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", s.handleLoginPage)
	mux.HandleFunc("POST /webauthn/login/begin", s.handleLoginBegin)
	mux.HandleFunc("POST /webauthn/login/finish", s.handleLoginFinish)
	mux.HandleFunc("GET /enrol", s.handleEnrolPage)
	mux.HandleFunc("POST /webauthn/register/begin", s.handleRegisterBegin)
	mux.HandleFunc("POST /webauthn/register/finish", s.handleRegisterFinish)
	mux.HandleFunc("GET /account", s.handleAccount)
	// nhsid's own address, typed by a person rather than reached through
	// an app, leads to their account page (which signs them in first).
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/account", http.StatusFound)
	})
	mux.HandleFunc("GET /account/add-device", s.handleAddDevicePage)
	mux.HandleFunc("POST /account/credentials/{id}/name", s.handleRename)
	mux.HandleFunc("POST /account/credentials/{id}/revoke", s.handleRevoke)
	mux.HandleFunc("POST /logout", s.handleLogout)
	mux.HandleFunc("POST /account/sessions/{sid}/end", s.handleEndSession)
	mux.Handle("GET /static/", http.StripPrefix("/static/", web.Static()))
}

// randomToken returns n random bytes, base64url encoded.
func (s *Service) randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(v string) []byte {
	h := sha256.Sum256([]byte(v))
	return h[:]
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// cookieName gives name the __Host- prefix when cookies are Secure.
func (s *Service) cookieName(name string) string {
	if s.cfg.SecureCookies {
		return "__Host-" + name
	}
	return name
}

func (s *Service) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Service) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(s.cookieName(name))
	if err != nil {
		return ""
	}
	return c.Value
}

// writeJSON sends v with status 200.
func writeJSON(w http.ResponseWriter, v any) {
	setJSONHeaders(w)
	_ = json.NewEncoder(w).Encode(v)
}

// writeRawJSON writes JSON encoded earlier, as writeJSON would.
func writeRawJSON(w http.ResponseWriter, raw []byte) {
	setJSONHeaders(w)
	_, _ = w.Write(raw)
	_, _ = w.Write([]byte{'\n'})
}

func setJSONHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
}

func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	apierror.Write(w, r, s.log, err)
}

// readJSON decodes a small JSON body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The request body is too large or unreadable.", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The request body is not valid JSON.", err)
	}
	return nil
}

// readBody reads a ceremony response body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, apierror.New(http.StatusBadRequest, "invalid_request", "The request body is too large or unreadable.", err)
	}
	return body, nil
}

// clientIP is the request's remote address. Trusted-proxy handling
// happens in the server's wrapper, which rewrites RemoteAddr.
func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ':' {
			return host[:i]
		}
	}
	return host
}

// securityHeaders sets the headers every authn page carries. A page whose
// form ends an OIDC flow widens form-action to the relying party's origin
// (allowFormRedirect).
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
}
