package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/detach"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// Risk wires the contextual sign-in risk engine (policy.RiskEngine) into
// login finish: after the credential verifies, low risk proceeds, medium
// risk below AAL3 answers step_up_required and raises the flow to AAL3, and
// high risk is denied, audited and notified. It only ever raises what the
// flow already requires.
type Risk struct {
	Engine *policy.RiskEngine
	Store  policy.RiskStore
	// Notifier is told of denied sign-ins; nil logs them (LogRiskNotifier).
	Notifier policy.RiskNotifier
}

// LogRiskNotifier "notifies" by writing a warning to the log, for
// deployments without mail or for the RA's log-based alerting.
type LogRiskNotifier struct{ Log *slog.Logger }

// NotifyRisk implements policy.RiskNotifier.
func (n LogRiskNotifier) NotifyRisk(ctx context.Context, personUID string, d policy.RiskDecision) error {
	log := n.Log
	if log == nil {
		log = slog.Default()
	}
	log.WarnContext(ctx, "risk: sign-in denied; person and RA to be notified", "person", personUID,
		"level", string(d.Level), "score", d.Score, "reasons", d.Summary(), "client", d.ClientID)
	return nil
}

// deviceCookie is a random, fingerprint-free browser id; only its hash
// goes into the risk profile.
const deviceCookie = "nhsid_device"

// deviceCookieAge is the longest lifetime browsers honour (400 days).
const deviceCookieAge = 400 * 24 * 60 * 60

// riskStepUpKey marks a flow whose sign-in was asked for a risk step-up;
// it holds the person's uid, in the challenge store.
func riskStepUpKey(flowID string) string { return "risk-stepup:" + flowID }

// deviceID returns the hash of the browser's device cookie, setting a new
// cookie when there is none.
func (s *Service) deviceID(w http.ResponseWriter, r *http.Request) string {
	v := s.cookie(r, deviceCookie)
	if len(v) < 22 || len(v) > 64 {
		var err error
		if v, err = s.randomToken(16); err != nil {
			return ""
		}
		s.setCookie(w, deviceCookie, v, deviceCookieAge)
	}
	return b64url(hashToken("nhsid device v1:" + v))
}

// requestIP is the client address the server's middleware worked out
// (trusted proxies applied), else the connection's.
func requestIP(r *http.Request) netip.Addr {
	ip := audit.RequestFrom(r.Context()).IP
	if ip == "" {
		ip = clientIP(r)
	}
	a, _ := netip.ParseAddr(ip)
	return a.Unmap()
}

// mdsRevoked reports whether the metadata service lists the credential's
// authenticator model as REVOKED now.
func (s *Service) mdsRevoked(c Credential, now time.Time) bool {
	if s.policy == nil || len(c.AAGUID) != 16 {
		return false
	}
	var id uuid.UUID
	copy(id[:], c.AAGUID)
	e := s.policy.mds[id]
	if e == nil {
		return false
	}
	cur := metadata.CurrentStatusReportAt(e.StatusReports, now)
	return cur != nil && cur.Status == metadata.Revoked
}

// riskResult is a sign-in allowed by the engine, to learn from once the
// session has started.
type riskResult struct {
	person   string
	profile  policy.RiskProfile // as read for the decision, with its version
	rc       policy.RiskContext
	a        policy.RiskAssessment
	decision policy.RiskDecision
}

type riskDetailKey struct{}

// auditContext carries the decision into the sign-in's audit event.
func (rk *riskResult) auditContext(ctx context.Context) context.Context {
	if rk == nil {
		return ctx
	}
	return context.WithValue(ctx, riskDetailKey{}, riskDetail(rk.decision))
}

// riskAuditDetail returns the risk fields for a sign-in event in ctx.
func riskAuditDetail(ctx context.Context) map[string]any {
	d, _ := ctx.Value(riskDetailKey{}).(map[string]any)
	return d
}

func riskDetail(d policy.RiskDecision) map[string]any {
	names := make([]string, 0, len(d.Signals))
	for _, s := range d.Signals {
		names = append(names, s.Name)
	}
	return map[string]any{"risk_level": string(d.Level), "risk_score": d.Score, "risk_signals": names,
		"risk_reasons": d.Reasons(), "risk_outcome": d.Outcome}
}

func errStepUpRequired() *apierror.Error {
	return apierror.New(http.StatusUnauthorized, "step_up_required",
		"This sign-in looks different from usual, so we need your high-assurance security key. Use it now to continue.", nil)
}

func errRiskDenied() *apierror.Error {
	return apierror.New(http.StatusForbidden, "access_denied",
		"We have stopped this sign-in to protect your account. If it was you, contact your Registration Authority.", nil)
}

// riskGate evaluates a verified sign-in before its session starts. It
// answers the request itself and returns ok false for a step-up or a
// denial; otherwise it returns what to learn after the session starts (nil
// when the engine is not wired). failures is the person's failed sign-ins on
// record, as checkPerson read them.
func (s *Service) riskGate(w http.ResponseWriter, r *http.Request, f *Flow, person string, cred Credential, failures int) (*riskResult, bool) {
	if s.risk == nil || s.risk.Engine == nil || s.risk.Store == nil {
		return nil, true
	}
	ctx := r.Context()
	now := s.now()
	rc := policy.RiskContext{
		Now: now, DeviceID: s.deviceID(w, r), IP: requestIP(r), ClientID: f.ClientID, CredentialID: b64url(cred.ID),
		CredentialLastUsed: cred.LastUsedAt, CredentialCreated: cred.CreatedAt,
		RecentFailures: failures, AuthenticatorRevoked: s.mdsRevoked(cred, now),
	}
	prof, err := s.risk.Store.GetRiskProfile(ctx, person)
	if err != nil {
		s.fail(w, r, fmt.Errorf("risk profile: %w", err))
		return nil, false
	}
	a := s.risk.Engine.Evaluate(&prof, rc)
	// A pending risk step-up of this flow: taken now, put back if needed.
	// Only a flow raised to AAL3 can have one.
	pending := false
	if f.MinAAL >= AAL3 {
		if raw, err := s.store.TakeChallenge(ctx, riskStepUpKey(f.ID), now); err == nil && string(raw) == person {
			pending = true
		}
	}
	d := policy.RiskDecision{Time: now, ClientID: f.ClientID, Level: a.Level, Score: a.Score, Signals: a.Signals, Outcome: policy.OutcomeAllowed}
	if a.Location != nil {
		d.Place = a.Location.String()
	}
	_, deny := policy.RequiredAAL(a.Level, f.MinAAL)
	switch {
	case deny:
		d.Outcome = policy.OutcomeDenied
		s.riskRecord(ctx, person, d)
		s.riskAudit(w, r, f, person, d, audit.Denied)
		notifier := s.risk.Notifier
		if notifier == nil {
			notifier = LogRiskNotifier{Log: s.log}
		}
		if err := notifier.NotifyRisk(ctx, person, d); err != nil {
			s.log.WarnContext(ctx, "risk: notify", "person", person, "err", err.Error())
		}
		s.log.WarnContext(ctx, "risk: sign-in denied", "person", person, "score", a.Score, "reasons", d.Summary())
		s.fail(w, r, errRiskDenied())
		return nil, false
	case a.Level == policy.RiskMedium && cred.AAL < AAL3:
		d.Outcome = policy.OutcomeStepUpRequired
		if _, err := s.store.UpdateFlow(ctx, f.ID, func(x *Flow) error {
			x.MinAAL = max(x.MinAAL, AAL3)
			return nil
		}); err != nil {
			s.fail(w, r, fmt.Errorf("risk step-up: %w", err))
			return nil, false
		}
		if err := s.store.PutChallenge(ctx, riskStepUpKey(f.ID), []byte(person), f.ExpiresAt); err != nil {
			s.fail(w, r, fmt.Errorf("risk step-up: %w", err))
			return nil, false
		}
		s.riskRecord(ctx, person, d)
		s.riskAudit(w, r, f, person, d, audit.Failure)
		s.log.InfoContext(ctx, "risk: step-up required", "person", person, "score", a.Score, "reasons", d.Summary())
		s.fail(w, r, errStepUpRequired())
		return nil, false
	case pending:
		d.Outcome = policy.OutcomeStepUpPassed
	}
	return &riskResult{person: person, profile: prof, rc: rc, a: a, decision: d}, true
}

// riskRecord keeps a decision that did not end in a session.
func (s *Service) riskRecord(ctx context.Context, person string, d policy.RiskDecision) {
	if _, err := s.risk.Store.UpdateRiskProfile(ctx, person, func(p *policy.RiskProfile) error {
		s.risk.Engine.Record(p, d)
		return nil
	}); err != nil {
		s.log.WarnContext(ctx, "risk: record decision", "person", person, "err", err.Error())
	}
}

// riskAudit records a refused sign-in with its reasons; the generic
// failure record of the response is then not needed.
func (s *Service) riskAudit(w http.ResponseWriter, r *http.Request, f *Flow, person string, d policy.RiskDecision, outcome audit.Outcome) {
	if fw, ok := w.(*signinFailureWriter); ok {
		fw.done = true
	}
	detail := riskDetail(d)
	detail["status"] = http.StatusUnauthorized
	if outcome == audit.Denied {
		detail["status"] = http.StatusForbidden
	}
	ctx, cancel := detach.Context(r.Context()) // recorded even if the client has gone
	defer cancel()
	if err := s.recorder().Record(ctx, audit.Event{
		Type: audit.SigninFailure, Outcome: outcome, Subject: person, Client: f.ClientID, Detail: detail,
	}); err != nil {
		s.log.ErrorContext(ctx, "audit risk decision", "err", err)
	}
}

// riskLearn updates the profile after a successful sign-in, from the copy
// read for the decision: one write, unless the profile changed meanwhile.
func (s *Service) riskLearn(ctx context.Context, rk *riskResult) {
	if rk == nil {
		return
	}
	if err := s.risk.Store.UpdateRiskProfileFrom(ctx, rk.profile, s.riskUpdate(rk)); err != nil {
		s.log.WarnContext(ctx, "risk: update profile", "person", rk.person, "err", err.Error())
	}
}

// riskUpdate is what a successful sign-in teaches the profile.
func (s *Service) riskUpdate(rk *riskResult) func(*policy.RiskProfile) error {
	return func(p *policy.RiskProfile) error {
		s.risk.Engine.Learn(p, rk.rc, rk.a)
		s.risk.Engine.Record(p, rk.decision)
		return nil
	}
}

// riskQueuer is a risk store that can queue a profile's update in a write
// pipeline, with a sign-in's other writes (store/postgres).
type riskQueuer interface {
	// QueueRiskProfileUpdate queues UpdateRiskProfileFrom's write if ctx
	// carries a write pipeline; complete, called after the pipeline was
	// sent, finishes the update if the queued write did not apply.
	QueueRiskProfileUpdate(ctx context.Context, read policy.RiskProfile, fn func(*policy.RiskProfile) error) (complete func(context.Context) error, queued bool, err error)
}

// queueRiskLearn queues riskLearn's write in wctx's write pipeline where
// the store can, so that it commits with the session. The returned
// function, called (with a context outside the pipeline) once the sign-in's
// writes are sent, completes the learning: nothing more when the queued
// write applied, else the usual update.
func (s *Service) queueRiskLearn(wctx context.Context, rk *riskResult) func(context.Context) {
	if rk == nil {
		return func(context.Context) {}
	}
	if q, ok := s.risk.Store.(riskQueuer); ok {
		complete, queued, err := q.QueueRiskProfileUpdate(wctx, rk.profile, s.riskUpdate(rk))
		if err != nil {
			s.log.WarnContext(wctx, "risk: update profile", "person", rk.person, "err", err.Error())
			return func(context.Context) {}
		}
		if queued {
			return func(ctx context.Context) {
				if err := complete(ctx); err != nil {
					s.log.WarnContext(ctx, "risk: update profile", "person", rk.person, "err", err.Error())
				}
			}
		}
	}
	return func(ctx context.Context) { s.riskLearn(ctx, rk) }
}

// riskStepUpOptions limits a risk step-up ceremony to the person's AAL3
// credentials.
func (s *Service) riskStepUpOptions(r *http.Request, f *Flow) []webauthn.LoginOption {
	if s.risk == nil || f.MinAAL < AAL3 {
		return nil
	}
	ctx := r.Context()
	raw, err := s.store.TakeChallenge(ctx, riskStepUpKey(f.ID), s.now())
	if err != nil {
		return nil
	}
	if err := s.store.PutChallenge(ctx, riskStepUpKey(f.ID), raw, f.ExpiresAt); err != nil {
		return nil
	}
	u, err := s.loadUser(ctx, string(raw))
	if err != nil {
		return nil
	}
	var allow []protocol.CredentialDescriptor
	for i, c := range u.creds {
		if c.AAL >= AAL3 {
			allow = append(allow, u.wcreds[i].Descriptor())
		}
	}
	if len(allow) == 0 {
		return nil
	}
	return []webauthn.LoginOption{webauthn.WithAllowedCredentials(allow)}
}

// RecentRiskDecisions lists a person's recent sign-in decisions, newest
// first, with their reasons (for the account page and the RA console).
func (s *Service) RecentRiskDecisions(ctx context.Context, personUID string) ([]policy.RiskDecision, error) {
	if s.risk == nil || s.risk.Store == nil {
		return nil, nil
	}
	p, err := s.risk.Store.GetRiskProfile(ctx, personUID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recent risk decisions: %w", err)
	}
	return p.Decisions, nil
}

// riskView is one row of "recent sign-ins" on the account page.
type riskView struct {
	When, Reasons, Outcome, Level, Place string
}

func riskViews(ds []policy.RiskDecision) []riskView {
	out := make([]riskView, 0, len(ds))
	for _, d := range ds {
		out = append(out, riskView{When: d.Time.UTC().Format("2 Jan 2006 15:04"), Reasons: d.Summary(),
			Outcome: d.Outcome, Level: string(d.Level), Place: d.Place})
	}
	return out
}
