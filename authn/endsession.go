package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/jobs"
	"github.com/nhsid/nhsid/store"
)

// Reasons a session ends (Session.EndReason and SessionEndListener).
const (
	EndLogout        = "logout"         // the person signed out at nhsid
	EndRPLogout      = "rp_logout"      // RP-initiated logout (end_session_endpoint)
	EndRAAction      = "ra_action"      // an RA or the person ended it from session control
	EndAccountClosed = "account_closed" // leaver or closed account
	EndExpired       = "expired"        // absolute expiry reached (sweeper)
	EndReplaced      = "replaced"       // another person signed in on the same browser
)

// SessionParticipant records that a party received tokens or an assertion
// in an SSO session: an OIDC client ("oidc", PartyID = client_id) or a SAML
// SP ("saml", PartyID = entity ID). FirstAt is when it first did.
type SessionParticipant struct {
	SID     string
	Kind    string
	PartyID string
	FirstAt time.Time
}

// ParticipantStore persists session participants. store/memory and
// store/postgres implement it (table session_participants).
type ParticipantStore interface {
	// AddSessionParticipant records p; recording the same (SID, Kind,
	// PartyID) again keeps the first FirstAt.
	AddSessionParticipant(ctx context.Context, p SessionParticipant) error
	// ListSessionParticipants returns a session's participants, oldest first.
	ListSessionParticipants(ctx context.Context, sid string) ([]SessionParticipant, error)
}

// ExpiredSessionStore finds sessions whose absolute expiry has passed but
// that were never ended, for the sweeper.
type ExpiredSessionStore interface {
	// ListExpiredSessions returns up to limit sessions with EndedAt zero
	// and ExpiresAt at or before now, earliest expiry first.
	ListExpiredSessions(ctx context.Context, now time.Time, limit int) ([]Session, error)
}

// SessionEndListener is told when an SSO session ends (explicit logout,
// RP-initiated logout, an RA action, account closure or absolute expiry —
// never an idle timeout, which only stops SSO reuse). idp registers one
// that revokes the session's tokens and queues back-channel logout;
// federation/saml registers one for SAML Single Logout. SessionEnded is
// called synchronously inside EndSession, once per session: it must be quick
// (queue work, do not call RPs) and must not fail the logout, so it reports
// its own errors to its log.
type SessionEndListener interface {
	SessionEnded(ctx context.Context, s Session, reason string)
}

// SessionEndFunc adapts a function to SessionEndListener.
type SessionEndFunc func(ctx context.Context, s Session, reason string)

// SessionEnded implements SessionEndListener.
func (f SessionEndFunc) SessionEnded(ctx context.Context, s Session, reason string) {
	f(ctx, s, reason)
}

// listeners is the set of registered SessionEndListeners.
type listeners struct {
	mu sync.RWMutex
	ls []SessionEndListener
}

func (s *Service) listeners() *listeners { return &s.ends }

// OnSessionEnd registers l to be told of every session that ends. Register
// at wiring time (internal/server), before serving.
func (s *Service) OnSessionEnd(l SessionEndListener) {
	ls := s.listeners()
	ls.mu.Lock()
	ls.ls = append(ls.ls, l)
	ls.mu.Unlock()
}

// EndSession ends the session with public id sid for reason (one of the
// End* constants) and tells every SessionEndListener. Ending an ended or
// unknown session is a no-op, so listeners run once per session.
func (s *Service) EndSession(ctx context.Context, sid, reason string) error {
	cur, err := s.store.GetSessionBySID(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return s.endStored(ctx, cur, reason)
}

// endStored ends cur (as read from the store) and notifies listeners.
func (s *Service) endStored(ctx context.Context, cur Session, reason string) error {
	if !cur.EndedAt.IsZero() {
		return nil
	}
	now := s.now()
	ended := false
	updated, err := s.store.UpdateSession(ctx, cur.IDHash, func(x *Session) error {
		ended = false
		if x.EndedAt.IsZero() {
			x.EndedAt, x.EndReason = now, reason
			ended = true
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if !ended {
		return nil
	}
	s.log.InfoContext(ctx, "session ended", "person", updated.PersonUID, "reason", reason)
	if err := s.recorder().Record(ctx, audit.Event{Type: audit.Logout, Subject: updated.PersonUID, Actor: actorFor(updated, reason),
		SessionHash: audit.HashSession(updated.SID), Detail: map[string]any{"kind": auditKind(reason), "reason": reason}}); err != nil {
		// The session has ended; a missing audit record must not resurrect it.
		s.log.ErrorContext(ctx, "audit session end", "err", err)
	}
	ls := s.listeners()
	ls.mu.RLock()
	all := append([]SessionEndListener(nil), ls.ls...)
	ls.mu.RUnlock()
	for _, l := range all {
		l.SessionEnded(ctx, updated, reason)
	}
	return nil
}

func actorFor(s Session, reason string) string {
	switch reason {
	case EndLogout, EndRPLogout:
		return s.PersonUID
	}
	return ""
}

// auditKind maps an end reason to the audit Logout event's Detail["kind"].
func auditKind(reason string) string {
	switch reason {
	case EndLogout:
		return "user"
	case EndRPLogout:
		return "rp"
	case EndExpired:
		return "expiry"
	case EndReplaced:
		return "user"
	}
	return "admin"
}

// EndPersonSessions ends every live session of a person (leavers, account
// closure, an RA's "end sessions") and returns how many it ended.
func (s *Service) EndPersonSessions(ctx context.Context, uid, reason string) (int, error) {
	sessions, err := s.store.ListSessions(ctx, uid)
	if err != nil {
		return 0, fmt.Errorf("end sessions: %w", err)
	}
	n := 0
	var errs []error
	for _, x := range sessions {
		if err := s.endStored(ctx, x, reason); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ListParticipants returns the parties of a session (empty when the store
// does not record them).
func (s *Service) ListParticipants(ctx context.Context, sid string) ([]SessionParticipant, error) {
	ps, ok := s.store.(ParticipantStore)
	if !ok {
		return nil, nil
	}
	return ps.ListSessionParticipants(ctx, sid)
}

// sweepBatch is how many expired sessions one sweep pass ends.
const sweepBatch = 100

// SweepExpiredSessions ends, in batches, every session past its absolute
// expiry at now that was never ended (reason "expired"), so that RPs are
// told. It returns how many it ended.
func (s *Service) SweepExpiredSessions(ctx context.Context) (int, error) {
	es, ok := s.store.(ExpiredSessionStore)
	if !ok {
		return 0, nil
	}
	total := 0
	for {
		batch, err := es.ListExpiredSessions(ctx, s.now(), sweepBatch)
		if err != nil {
			return total, fmt.Errorf("sweep sessions: %w", err)
		}
		for _, x := range batch {
			if err := s.endStored(ctx, x, EndExpired); err != nil {
				return total, err
			}
			total++
		}
		if len(batch) < sweepBatch || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// RunSessionSweeper sweeps expired sessions every interval until ctx ends,
// on one replica at a time (the store's job lock).
func (s *Service) RunSessionSweeper(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	sweep := func(ctx context.Context) error {
		_, err := s.SweepExpiredSessions(ctx)
		return err
	}
	jobs.Every(ctx, interval, nil, func(ctx context.Context) error {
		return jobs.Locked(ctx, s.store, "session-sweep", false, sweep)
	}, func(err error) { s.log.ErrorContext(ctx, "session sweep", "err", err) })
}

// sessionView is one row of the account page's session list.
type sessionView struct {
	SID, Device, IP, Started, LastSeen string
	AAL                                int
	Apps                               []string
	Current                            bool
}

// sessionViews lists the person's live sessions for the account page.
func (s *Service) sessionViews(ctx context.Context, current *Session) ([]sessionView, error) {
	all, err := s.store.ListSessions(ctx, current.PersonUID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []sessionView
	for _, x := range all {
		if !now.Before(x.ExpiresAt) {
			continue
		}
		v := sessionView{SID: x.SID, Device: deviceName(x.UserAgent), IP: x.IP, AAL: x.AAL,
			Started: x.AuthTime.UTC().Format("2 January 2006 15:04 MST"), LastSeen: x.LastSeenAt.UTC().Format("2 January 2006 15:04 MST"),
			Current: x.SID == current.SID}
		parts, err := s.ListParticipants(ctx, x.SID)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			v.Apps = append(v.Apps, p.PartyID)
		}
		out = append(out, v)
	}
	return out, nil
}

// deviceName is a short label for a user agent.
func deviceName(ua string) string {
	if ua == "" {
		return "Unknown device"
	}
	if len(ua) > 80 {
		return ua[:80] + "…"
	}
	return ua
}

// handleEndSession ends one of the signed-in person's sessions (account
// page, POST with csrf_token). Ending the current one signs the browser out.
func (s *Service) handleEndSession(w http.ResponseWriter, r *http.Request) {
	sess := s.accountPost(w, r)
	if sess == nil {
		return
	}
	sid := r.PathValue("sid")
	target, err := s.store.GetSessionBySID(r.Context(), sid)
	if err != nil || target.PersonUID != sess.PersonUID {
		s.renderAccount(w, r, sess, http.StatusNotFound, "That session was not found.", "")
		return
	}
	if err := s.endStored(r.Context(), target, EndLogout); err != nil {
		s.renderAccount(w, r, sess, http.StatusServiceUnavailable, "The session could not be ended. Try again.", "")
		return
	}
	if target.SID == sess.SID {
		s.setCookie(w, sessionCookie, "", -1)
		securityHeaders(w)
		s.render(w, r, http.StatusOK, "signed_out", pageData{Title: "You have signed out"})
		return
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// ClearSessionCookie removes the browser's session cookie (after
// RP-initiated logout).
func (s *Service) ClearSessionCookie(w http.ResponseWriter) {
	s.setCookie(w, sessionCookie, "", -1)
}

// CSRFToken is the csrf_token value forms of this browser's session carry
// (for idp's logout confirmation page).
func (s *Service) CSRFToken(r *http.Request) string { return s.csrfToken(r) }

// CheckCSRF checks the posted csrf_token against the browser's session.
func (s *Service) CheckCSRF(r *http.Request) bool { return s.checkCSRF(r) }

// continueSession retires prev (same person re-authenticating in the same
// browser, after an idle timeout or for step-up) without telling anyone, and
// returns its sid for the new session: the SSO session goes on under the
// same public id, so the tokens and parties already in it stay tied to it
// and a later EndSession reaches them all. The retired row keeps its
// history under a suffixed sid.
func (s *Service) continueSession(ctx context.Context, prev Session) (string, error) {
	suffix, err := s.randomToken(6)
	if err != nil {
		return "", fmt.Errorf("continue session: %w", err)
	}
	now := s.now()
	_, err = s.store.UpdateSession(ctx, prev.IDHash, func(x *Session) error {
		x.SID = prev.SID + "." + suffix
		if x.EndedAt.IsZero() {
			x.EndedAt, x.EndReason = now, EndReplaced
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("continue session: %w", err)
	}
	return prev.SID, nil
}
