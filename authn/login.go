package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

func errInvalidCredential(cause error) *apierror.Error {
	return apierror.New(http.StatusBadRequest, "invalid_credential",
		"Your security key could not be checked. Try again, or use another security key.", cause)
}

func errCeremonyState(cause error) *apierror.Error {
	return apierror.New(http.StatusBadRequest, "invalid_request",
		"This security key request has timed out or was already used. Start again.", cause)
}

// handleLoginPage shows the sign-in page of a flow.
func (s *Service) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	f, err := s.LoadFlow(r, r.URL.Query().Get("flow"))
	if err != nil {
		s.renderAPIError(w, r, "You cannot sign in with this link", err)
		return
	}
	securityHeaders(w)
	s.render(w, r, http.StatusOK, "login", pageData{
		Title:  "Sign in with your security key",
		FlowID: f.ID,
		StepUp: f.MinAAL >= AAL3,
	})
}

// loginChallengeKey is where a flow's login challenge waited for finish
// before flows kept it themselves; finish still looks there for a ceremony
// begun by an older nhsid during an upgrade.
func loginChallengeKey(flowID string) string { return "login:" + flowID }

// handleLoginBegin answers {"flow"} with request options for a discoverable
// credential with user verification. The ceremony's state goes into the
// flow, in the one write that also checks the flow's binding and expiry.
func (s *Service) handleLoginBegin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Flow string `json:"flow"`
	}
	if err := readJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Flow == "" || len(req.Flow) > 128 {
		s.fail(w, r, errInvalidFlow(errors.New("missing or oversized flow id")))
		return
	}
	opts, err := s.madeLoginOptions(r, req.Flow)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if opts != nil {
		writeRawJSON(w, opts)
		return
	}
	assertion, f, err := s.beginLogin(r, req.Flow, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if f.MinAAL >= AAL3 {
		// A step-up's options depend on the flow and the person: begin
		// again with them (the rarer path pays a second write).
		more, err := s.stepUpOptions(r, f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if len(more) > 0 {
			if assertion, _, err = s.beginLogin(r, f.ID, more); err != nil {
				s.fail(w, r, err)
				return
			}
		}
	}
	writeJSON(w, assertion)
}

// madeChallengeYoungUntil is the last instant the begin hands out the
// challenge made with a flow: while at least four fifths of its life, which
// ends at expires, is left.
func (s *Service) madeChallengeYoungUntil(expires time.Time) time.Time {
	return expires.Add(-s.cfg.ChallengeTTL * 4 / 5)
}

// madeLoginOptions returns the request options of the login challenge
// that StartFlow made with the flow id, if the flow is this browser's and
// unexpired and the challenge is unused and young: within the first fifth
// of its life, so that the person has nearly the whole of it to use their
// key. Otherwise (nil options) the begin makes a new challenge. A flow
// that is not this browser's, or has expired, is an error (LoadFlow's),
// so that the begin does not read it again to say why. The first begin of
// a flow this process started does not read it (started.go).
func (s *Service) madeLoginOptions(r *http.Request, id string) ([]byte, error) {
	// (Without a binding cookie the hash matches no flow's, and the begin
	// still takes the entry: any browser's first begin spends it.)
	if opts := s.started.take(id, hashToken(s.cookie(r, bindCookie)), s.now()); opts != nil {
		return opts, nil // this process started the flow (started.go)
	}
	f, err := s.LoadFlow(r, id)
	if err != nil {
		return nil, err
	}
	if f.MinAAL >= AAL3 || len(f.LoginOptions) == 0 || len(f.LoginChallenge) == 0 {
		return nil, nil
	}
	if s.now().After(s.madeChallengeYoungUntil(f.LoginChallengeExpiresAt)) {
		return nil, nil
	}
	// The options must carry the challenge the flow holds: an older
	// nhsid, during a rolling upgrade, sets a challenge without clearing
	// them.
	var sd struct {
		Challenge string `json:"challenge"`
	}
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if json.Unmarshal(f.LoginChallenge, &sd) != nil || json.Unmarshal(f.LoginOptions, &o) != nil ||
		sd.Challenge == "" || sd.Challenge != o.PublicKey.Challenge {
		return nil, nil
	}
	return f.LoginOptions, nil
}

// newLoginChallenge makes a discoverable login ceremony's request options
// and its state (go-webauthn SessionData as JSON). User verification is
// always required; more adds to the options (a step-up's credentials).
func (s *Service) newLoginChallenge(more []webauthn.LoginOption) (*protocol.CredentialAssertion, []byte, error) {
	opts := append([]webauthn.LoginOption{webauthn.WithUserVerification(protocol.VerificationRequired)}, more...)
	assertion, sd, err := s.wa.BeginDiscoverableLogin(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("begin login: %w", err)
	}
	data, err := json.Marshal(sd)
	if err != nil {
		return nil, nil, fmt.Errorf("encode challenge: %w", err)
	}
	return assertion, data, nil
}

// beginLogin starts a login ceremony with more options and keeps its
// state in the flow id, if the flow is this browser's and unexpired; else
// the error says why (invalid_flow / expired_flow).
func (s *Service) beginLogin(r *http.Request, id string, more []webauthn.LoginOption) (*protocol.CredentialAssertion, *Flow, error) {
	assertion, data, err := s.newLoginChallenge(more)
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	f, err := s.store.SetFlowLoginChallenge(r.Context(), id, hashToken(s.cookie(r, bindCookie)), data, now.Add(s.cfg.ChallengeTTL), now)
	if errors.Is(err, store.ErrNotFound) {
		if _, lerr := s.LoadFlow(r, id); lerr != nil {
			return nil, nil, lerr
		}
		return nil, nil, errInvalidFlow(err) // gone meanwhile
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store challenge: %w", err)
	}
	return assertion, &f, nil
}

// stepUpOptions limits a step-up ceremony (a flow asking AAL3) to the AAL3
// credentials of the person signed in at a lower level, or of the person a
// risk step-up is for.
func (s *Service) stepUpOptions(r *http.Request, f *Flow) ([]webauthn.LoginOption, error) {
	var opts []webauthn.LoginOption
	sess, err := s.CurrentSession(r)
	if err != nil {
		return nil, err
	}
	if sess != nil && sess.AAL < AAL3 {
		u, err := s.loadUser(r.Context(), sess.PersonUID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		var allow []protocol.CredentialDescriptor
		if u != nil {
			for i, c := range u.creds {
				if c.AAL >= AAL3 {
					allow = append(allow, u.wcreds[i].Descriptor())
				}
			}
		}
		if len(allow) > 0 {
			opts = append(opts, webauthn.WithAllowedCredentials(allow))
		}
	}
	return append(opts, s.riskStepUpOptions(r, f)...), nil
}

// putChallenge stores ceremony state until finish.
func (s *Service) putChallenge(r *http.Request, key string, sd *webauthn.SessionData) error {
	data, err := json.Marshal(sd)
	if err != nil {
		return fmt.Errorf("encode challenge: %w", err)
	}
	if err := s.store.PutChallenge(r.Context(), key, data, s.now().Add(s.cfg.ChallengeTTL)); err != nil {
		return fmt.Errorf("store challenge: %w", err)
	}
	return nil
}

// takeChallenge removes and returns ceremony state: a challenge is
// answered once.
func (s *Service) takeChallenge(r *http.Request, key string) (webauthn.SessionData, error) {
	var sd webauthn.SessionData
	data, err := s.store.TakeChallenge(r.Context(), key, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return sd, errCeremonyState(err)
	}
	if err != nil {
		return sd, fmt.Errorf("take challenge: %w", err)
	}
	if err := json.Unmarshal(data, &sd); err != nil {
		return sd, fmt.Errorf("decode challenge: %w", err)
	}
	return sd, nil
}

// loginChallenge returns the login ceremony state f keeps (inFlow), which
// the finish uses up: the sign-in's writes spend it (SpendFlowLogin), and
// a failed finish drops it. A flow without one may have been begun by an
// older nhsid, which kept it in the challenge store: that is taken.
func (s *Service) loginChallenge(r *http.Request, f *Flow) (sd webauthn.SessionData, inFlow bool, err error) {
	if f.LoginChallenge == nil {
		sd, err = s.takeChallenge(r, loginChallengeKey(f.ID))
		return sd, false, err
	}
	if !f.LoginChallengeExpiresAt.IsZero() && !s.now().Before(f.LoginChallengeExpiresAt) {
		return sd, true, errCeremonyState(errors.New("login challenge expired"))
	}
	if err := json.Unmarshal(f.LoginChallenge, &sd); err != nil {
		return sd, true, fmt.Errorf("decode challenge: %w", err)
	}
	return sd, true, nil
}

// handleLoginFinish verifies an assertion for a flow, starts a session and
// answers {"redirect"}.
func (s *Service) handleLoginFinish(w http.ResponseWriter, r *http.Request) {
	w = s.auditSigninFailures(w, r)
	flowID := r.URL.Query().Get("flow")
	// The assertion names the person (its user handle), so the flow and
	// what the finish reads of the person can be read together (one round
	// trip where the store offers it). Its errors are reported in the order
	// they always were: the flow's first.
	body, bodyErr := readBody(w, r)
	var parsed *protocol.ParsedCredentialAssertionData
	parseErr := bodyErr
	if bodyErr == nil {
		parsed, parseErr = protocol.ParseCredentialRequestResponseBytes(body)
	}
	if parseErr == nil && len(parsed.Response.UserHandle) > 0 && len(parsed.Response.UserHandle) <= 64 {
		r = r.WithContext(store.WithSignInReadAhead(r.Context(), s.store, flowID, string(parsed.Response.UserHandle)))
	}
	ctx := r.Context()
	f, err := s.LoadFlow(r, flowID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if bodyErr != nil {
		s.fail(w, r, bodyErr)
		return
	}
	// Any finish attempt uses the challenge up: a failed one drops it
	// from the flow, a successful one spends it with its writes.
	sd, inFlow, err := s.loginChallenge(r, f)
	spent := false
	defer func() {
		if inFlow && !spent {
			if err := s.store.DropFlowLoginChallenge(context.WithoutCancel(ctx), f.ID); err != nil {
				s.log.WarnContext(ctx, "drop login challenge", "err", err.Error())
			}
		}
	}()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if parseErr != nil {
		s.fail(w, r, errInvalidCredential(fmt.Errorf("parse assertion: %w", parseErr)))
		return
	}
	// User verification must happen in this ceremony; the stored UV flag
	// of the credential latches and says nothing about now.
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		s.fail(w, r, errUVRequired())
		return
	}
	var refused error
	var limited *limitRefusal
	var personUID string // set once the user handle names a real person
	var failures int     // the person's failed sign-ins on record
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		if len(userHandle) == 0 || len(userHandle) > 64 {
			return nil, errors.New("bad user handle")
		}
		u, err := s.loadUser(ctx, string(userHandle))
		if err != nil {
			return nil, err
		}
		personUID = u.person.UID
		n, lr, err := s.checkPerson(ctx, personUID)
		if err != nil {
			return nil, err
		}
		failures = n
		if lr != nil {
			limited = lr
			return nil, lr.err
		}
		if u.person.Status == policy.StatusClosed {
			refused = apierror.New(http.StatusForbidden, "invalid_credential",
				"This account is closed. Contact your Registration Authority.", errors.New("person closed"))
			return nil, refused
		}
		return u, nil
	}
	user, cred, err := s.wa.ValidatePasskeyLogin(handler, sd, parsed)
	if limited != nil {
		s.failLimited(w, r, limited)
		return
	}
	if refused != nil {
		s.fail(w, r, refused)
		return
	}
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			err = fmt.Errorf("%w: %s", err, pe.DevInfo)
		}
		if errors.Is(err, store.ErrUnavailable) {
			s.fail(w, r, err)
			return
		}
		s.personFailed(ctx, personUID)
		s.fail(w, r, errInvalidCredential(err))
		return
	}
	u := user.(*waUser)
	stored, ok := u.credential(cred.ID)
	if !ok {
		s.fail(w, r, errInvalidCredential(errors.New("credential vanished")))
		return
	}
	if cred.Authenticator.CloneWarning {
		s.log.Warn("sign-in refused: signature counter did not advance (possible cloned authenticator)",
			"person", u.person.UID, "credential", b64url(cred.ID),
			"stored_count", stored.SignCount, "presented_count", parsed.Response.AuthenticatorData.Counter)
		s.personFailed(ctx, u.person.UID)
		s.fail(w, r, errInvalidCredential(errors.New("signature counter regression")))
		return
	}
	if stored.AAL < f.MinAAL {
		s.fail(w, r, apierror.New(http.StatusForbidden, "authenticator_not_allowed",
			"This service needs a higher-assurance security key (such as your smartcard-equivalent key). Use that key, or ask your Registration Authority for one.",
			fmt.Errorf("credential aal %d < flow min %d", stored.AAL, f.MinAAL)))
		return
	}
	rk, ok := s.riskGate(w, r, f, u.person.UID, stored, failures)
	if !ok {
		return
	}
	ctx = rk.auditContext(ctx)
	now := s.now()
	data, err := json.Marshal(cred)
	if err != nil {
		s.fail(w, r, fmt.Errorf("encode credential: %w", err))
		return
	}
	// The credential's use, the session, the flow's sign-in and the audit
	// event go together: in one write pipeline where the store has them
	// (one round trip, one commit, all or nothing).
	wctx, send, err := store.BeginWrites(ctx, s.store)
	if err != nil {
		s.fail(w, r, fmt.Errorf("sign-in writes: %w", err))
		return
	}
	stored, err = s.recordCredentialUse(wctx, stored, cred.Authenticator.SignCount, data, now)
	if errors.Is(err, store.ErrNotFound) {
		err = errInvalidCredential(errors.New("credential revoked during sign-in"))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The profile's update goes beside the credential's, ahead of the
	// inserts, so that the store can send the sign-in's inserts (audit
	// events among them) as fewer statements.
	learned := s.queueRiskLearn(wctx, rk)
	prev, _ := s.CurrentSession(r) // ended or continued; a step-up's audit names it
	sess, raw, err := s.newSession(ctx, r, prev, stored)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Before the session, so that a store without pipelines refuses a
	// replay before it starts one.
	if err := s.store.SpendFlowLogin(wctx, f.ID, sess.SID, sess.AuthTime); err != nil {
		s.fail(w, r, spendErr(err))
		return
	}
	if err := s.store.CreateSession(wctx, sess); err != nil {
		s.fail(w, r, fmt.Errorf("start session: %w", err))
		return
	}
	if err := s.auditSignin(wctx, f, prev, &sess, &stored); err != nil {
		s.fail(w, r, err)
		return
	}
	next, completed, err := s.completeFlow(ctx, wctx, r, f, &sess, u.person)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := send(wctx); err != nil {
		s.fail(w, r, spendErr(fmt.Errorf("sign-in writes: %w", err)))
		return
	}
	spent = true
	completed()
	s.setSessionCookie(w, sess, raw)
	s.personSucceeded(ctx, u.person.UID, failures)
	learned(ctx)
	s.log.Info("sign-in", "person", u.person.UID, "aal", sess.AAL, "sid", sess.SID, "credential", b64url(cred.ID))
	writeJSON(w, map[string]string{"redirect": next})
}

// completeFlow lets the flow's completer, if its kind has one, finish it
// with the sign-in's writes (see FlowCompleter). It returns where the
// browser goes next (the flow's resume URL unless the completer says
// otherwise) and what to do once the writes are sent.
func (s *Service) completeFlow(ctx, wctx context.Context, r *http.Request, f *Flow, sess *Session, person policy.Person) (string, func(), error) {
	next, sent := resumeURL(f.ResumeURL, f.ID), func() {}
	c := s.completers[f.Kind]
	if c == nil {
		return next, sent, nil
	}
	done, after, err := c.CompleteFlow(ctx, wctx, r, f, sess, person)
	if err != nil {
		return "", nil, err
	}
	if done == "" {
		return next, sent, nil
	}
	if err := s.store.EndFlow(wctx, f.ID, s.now()); err != nil {
		return "", nil, fmt.Errorf("end flow: %w", err)
	}
	if after != nil {
		sent = after
	}
	return done, sent, nil
}

// spendErr tells a login challenge used up meanwhile (a replayed or
// concurrent finish of one ceremony) from other failures of the sign-in's
// writes.
func spendErr(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return errCeremonyState(err)
	}
	return err
}

// credentialUseQueuer is a store that can record a credential's use in a
// write pipeline, with the sign-in's other writes (store/postgres).
type credentialUseQueuer interface {
	// QueueCredentialUse queues what RecordCredentialUse writes, if ctx
	// carries a write pipeline; queued is false when it does not. The
	// write skips a credential revoked since it was read.
	QueueCredentialUse(ctx context.Context, id []byte, signCount uint32, data []byte, at time.Time) (queued bool, err error)
}

// recordCredentialUse stores what a sign-in with stored changed (the
// signature counter, the credential data, the time of use): in ctx's write
// pipeline where the store has one, else at once (RecordCredentialUse,
// which also fails for a credential revoked since it was read).
func (s *Service) recordCredentialUse(ctx context.Context, stored Credential, signCount uint32, data []byte, at time.Time) (Credential, error) {
	if q, ok := s.store.(credentialUseQueuer); ok {
		queued, err := q.QueueCredentialUse(ctx, stored.ID, signCount, data, at)
		if err != nil {
			return stored, err
		}
		if queued {
			stored.SignCount, stored.Data, stored.LastUsedAt = signCount, data, at
			return stored, nil
		}
	}
	return s.store.RecordCredentialUse(ctx, stored.ID, signCount, data, at)
}

// resumeURL appends the flow id to the caller's resume URL.
func resumeURL(base, flowID string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "flow=" + flowID
}
