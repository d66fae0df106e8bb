package authn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nhsid/nhsid/store"
)

// sessionCookie carries the random session id; only its hash is stored.
const sessionCookie = "nhsid_session"

// CurrentSession returns the browser's live SSO session (not ended, not past
// absolute expiry), or nil, nil when there is none. Idle-expired sessions are
// returned; check Usable.
func (s *Service) CurrentSession(r *http.Request) (*Session, error) {
	raw := s.cookie(r, sessionCookie)
	if raw == "" || len(raw) > 128 {
		return nil, nil
	}
	sess, err := s.store.GetSession(r.Context(), hashToken(raw))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("current session: %w", err)
	}
	if !sess.EndedAt.IsZero() || !s.now().Before(sess.ExpiresAt) {
		return nil, nil
	}
	return &sess, nil
}

// Usable reports whether s may be reused for SSO at now (live and not
// idle-expired).
func (s *Service) Usable(sess *Session, now time.Time) bool {
	if sess == nil || !sess.EndedAt.IsZero() || !now.Before(sess.ExpiresAt) {
		return false
	}
	if sess.IdleTimeout > 0 && !now.Before(sess.LastSeenAt.Add(sess.IdleTimeout)) {
		return false
	}
	return true
}

// TouchSession records activity on a session (SSO reuse, account pages), so
// that its idle timeout restarts.
func (s *Service) TouchSession(ctx context.Context, sess *Session) error {
	now := s.now()
	updated, err := s.store.UpdateSession(ctx, sess.IDHash, func(x *Session) error {
		if now.After(x.LastSeenAt) {
			x.LastSeenAt = now
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	*sess = updated
	return nil
}

// lifetimes returns the absolute and idle lifetimes of a session at aal.
func (s *Service) lifetimes(aal int) (absolute, idle time.Duration) {
	if aal >= AAL3 {
		return s.cfg.AAL3Absolute, s.cfg.AAL3Idle
	}
	return s.cfg.AAL2Absolute, s.cfg.AAL2Idle
}

// newSession ends or continues the browser's previous session prev (nil
// when there is none) and returns the new session of the person who used
// cred, with its cookie value. The caller stores it (CreateSession), then
// sets the cookie (setSessionCookie).
func (s *Service) newSession(ctx context.Context, r *http.Request, prev *Session, cred Credential) (Session, string, error) {
	// sid stays that of the browser's session when the same person signs
	// in again (idle timeout, step-up), so the SSO session goes on.
	sid := ""
	if prev != nil {
		if prev.PersonUID != cred.PersonUID {
			// Another person on the same browser (a shared ward PC): the
			// first one's apps must be told.
			if err := s.endStored(ctx, *prev, EndReplaced); err != nil {
				return Session{}, "", err
			}
		} else {
			var err error
			if sid, err = s.continueSession(ctx, *prev); err != nil {
				return Session{}, "", err
			}
		}
	}
	raw, err := s.randomToken(32)
	if err != nil {
		return Session{}, "", fmt.Errorf("start session: %w", err)
	}
	if sid == "" {
		if sid, err = s.randomToken(16); err != nil {
			return Session{}, "", fmt.Errorf("start session: %w", err)
		}
	}
	now := s.now()
	abs, idle := s.lifetimes(cred.AAL)
	ua := r.UserAgent()
	if len(ua) > 512 {
		ua = ua[:512]
	}
	sess := Session{
		IDHash: hashToken(raw), SID: sid, PersonUID: cred.PersonUID, CredentialID: cred.ID,
		AAL: cred.AAL, AMR: amrFor(cred), AuthTime: now.Truncate(time.Second), LastSeenAt: now,
		IdleTimeout: idle, ExpiresAt: now.Add(abs), UserAgent: ua, IP: clientIP(r),
	}
	return sess, raw, nil
}

// setSessionCookie sets the cookie of sess, whose value is raw, for the
// session's absolute lifetime.
func (s *Service) setSessionCookie(w http.ResponseWriter, sess Session, raw string) {
	abs, _ := s.lifetimes(sess.AAL)
	s.setCookie(w, sessionCookie, raw, int(abs.Seconds()))
}

// csrfToken is the per-session value that forms carry: a MAC of a fixed
// label under the secret session cookie, so it needs no storage and no one
// without the cookie can compute it.
func (s *Service) csrfToken(r *http.Request) string {
	raw := s.cookie(r, sessionCookie)
	if raw == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(raw))
	m.Write([]byte("nhsid csrf v1"))
	return b64url(m.Sum(nil))
}

// checkCSRF compares the form's csrf_token with the session's value.
func (s *Service) checkCSRF(r *http.Request) bool {
	want := s.csrfToken(r)
	got := r.PostFormValue("csrf_token")
	return want != "" && hmac.Equal([]byte(want), []byte(got))
}

// handleLogout ends the browser's session (EndSession: listeners revoke
// its tokens and tell its relying parties) and clears the cookie. A
// cross-site POST carries no SameSite=Lax cookie, so it cannot end anyone's
// session.
func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.CurrentSession(r); err == nil && sess != nil {
		if err := s.endStored(r.Context(), *sess, EndLogout); err != nil {
			s.renderError(w, r, http.StatusInternalServerError, "Sign out failed", "Something went wrong on our side. Try again.")
			return
		}
	}
	s.setCookie(w, sessionCookie, "", -1)
	securityHeaders(w)
	s.render(w, r, http.StatusOK, "signed_out", pageData{Title: "You have signed out"})
}
