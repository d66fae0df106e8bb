package authn

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/store"
)

// bindCookie binds flows to the browser that started them.
const bindCookie = "nhsid_bind"

func errInvalidFlow(cause error) *apierror.Error {
	return apierror.New(http.StatusBadRequest, "invalid_flow",
		"This sign-in link is not valid in this browser. Go back to the service you were using and start again.", cause)
}

func errExpiredFlow(cause error) *apierror.Error {
	return apierror.New(http.StatusBadRequest, "expired_flow",
		"This sign-in has timed out. Go back to the service you were using and start again.", cause)
}

// StartFlow stores f (filling ID, BindingHash, ExpiresAt), binds it to the
// browser with a cookie and returns the login page URL ("/login?flow=<id>").
// A browser keeps one binding cookie for all its flows, so sign-ins in
// several tabs do not disturb each other.
func (s *Service) StartFlow(w http.ResponseWriter, r *http.Request, f Flow) (string, error) {
	bind := s.cookie(r, bindCookie)
	if len(bind) < 32 {
		var err error
		if bind, err = s.randomToken(32); err != nil {
			return "", fmt.Errorf("start flow: %w", err)
		}
	}
	id, err := s.randomToken(24)
	if err != nil {
		return "", fmt.Errorf("start flow: %w", err)
	}
	f.ID = id
	f.BindingHash = hashToken(bind)
	f.ExpiresAt = s.now().Add(s.cfg.FlowTTL)
	if f.MinAAL < AAL2 {
		f.MinAAL = AAL2
	}
	if f.MinAAL < AAL3 {
		// The login challenge goes in with the flow, so that the begin
		// only reads (a step-up's options depend on the person: its
		// begin makes its own).
		assertion, data, err := s.newLoginChallenge(nil)
		if err != nil {
			return "", fmt.Errorf("start flow: %w", err)
		}
		if f.LoginOptions, err = json.Marshal(assertion); err != nil {
			return "", fmt.Errorf("start flow: encode login options: %w", err)
		}
		f.LoginChallenge, f.LoginChallengeExpiresAt = data, s.now().Add(s.cfg.ChallengeTTL)
	}
	if err := s.store.CreateFlow(r.Context(), f); err != nil {
		return "", fmt.Errorf("start flow: %w", err)
	}
	if f.LoginOptions != nil {
		// Never past the flow's life.
		young := s.madeChallengeYoungUntil(f.LoginChallengeExpiresAt)
		if !young.Before(f.ExpiresAt) {
			young = f.ExpiresAt.Add(-time.Nanosecond)
		}
		s.started.put(f.ID, startedFlow{bindingHash: f.BindingHash, youngUntil: young, options: f.LoginOptions}, s.now())
	}
	// The cookie lives as long as the longest flow could.
	s.setCookie(w, bindCookie, bind, int(s.cfg.FlowTTL.Seconds())+60)
	return "/login?flow=" + url.QueryEscape(id), nil
}

// LoadFlow returns the flow if it exists, is unexpired and is bound to this
// browser; else an *apierror.Error (invalid_flow / expired_flow).
func (s *Service) LoadFlow(r *http.Request, id string) (*Flow, error) {
	if id == "" || len(id) > 128 {
		return nil, errInvalidFlow(errors.New("missing or oversized flow id"))
	}
	now := s.now()
	// Read at the zero time so that an expired flow the store still holds
	// is told apart (expired_flow) from one that never existed.
	f, err := s.store.GetFlow(r.Context(), id, time.Time{})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errInvalidFlow(err)
	}
	if err != nil {
		return nil, fmt.Errorf("load flow: %w", err)
	}
	if !f.ExpiresAt.IsZero() && !now.Before(f.ExpiresAt) {
		return nil, errExpiredFlow(nil)
	}
	bind := s.cookie(r, bindCookie)
	if bind == "" || subtle.ConstantTimeCompare(hashToken(bind), f.BindingHash) != 1 {
		return nil, errInvalidFlow(errors.New("flow not bound to this browser"))
	}
	return &f, nil
}

// FinishFlow deletes the flow.
func (s *Service) FinishFlow(ctx context.Context, id string) error {
	if err := s.store.DeleteFlow(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("finish flow: %w", err)
	}
	return nil
}
