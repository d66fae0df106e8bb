package authn

import (
	"context"
	"net/http"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/detach"
)

func (s *Service) recorder() audit.Recorder { return audit.OrNop(s.audit) }

// auditSignin records a successful sign-in, and a step-up when it replaced
// the same person's session at a lower AAL; the response waits for both.
func (s *Service) auditSignin(ctx context.Context, f *Flow, prev, sess *Session, c *Credential) error {
	detail := map[string]any{"aal": sess.AAL, "amr": sess.AMR, "credential": b64url(c.ID), "client": f.ClientID}
	if f.MinAAL > AAL2 {
		detail["required_aal"] = f.MinAAL
	}
	for k, v := range riskAuditDetail(ctx) {
		detail[k] = v
	}
	if err := s.recorder().Record(ctx, audit.Event{
		Type: audit.SigninSuccess, Subject: sess.PersonUID, Actor: sess.PersonUID, Client: f.ClientID,
		SessionHash: audit.HashSession(sess.SID), Detail: detail,
	}); err != nil {
		return err
	}
	if prev == nil || prev.PersonUID != sess.PersonUID || prev.AAL >= sess.AAL {
		return nil
	}
	return s.recorder().Record(ctx, audit.Event{
		Type: audit.StepUp, Subject: sess.PersonUID, Actor: sess.PersonUID, Client: f.ClientID,
		SessionHash: audit.HashSession(sess.SID),
		Detail:      map[string]any{"from_aal": prev.AAL, "to_aal": sess.AAL, "previous_session": audit.HashSession(prev.SID)},
	})
}

// signinFailureWriter records a sign-in failure when the handler answers
// with an error status, before the header is written.
type signinFailureWriter struct {
	http.ResponseWriter
	s      *Service
	r      *http.Request
	client string
	done   bool
}

func (w *signinFailureWriter) WriteHeader(code int) {
	if !w.done && code >= 400 && code != apierror.StatusClientClosed {
		w.done = true
		// A refusal is recorded even when the client hung up after
		// sending: leaving must not erase the attempt. A request that
		// ended only because its client left decided nothing (the
		// sign-in's writes land or not whatever the answer), so it is
		// no failure to record.
		ctx, cancel := detach.Context(w.r.Context())
		defer cancel()
		if f, err := w.s.LoadFlow(w.r.WithContext(ctx), w.r.URL.Query().Get("flow")); err == nil {
			w.client = f.ClientID
		}
		err := w.s.recorder().Record(ctx, audit.Event{
			Type: audit.SigninFailure, Outcome: audit.Failure, Client: w.client,
			Detail: map[string]any{"status": code},
		})
		if err != nil {
			w.s.log.ErrorContext(ctx, "audit sign-in failure", "err", err)
		}
	}
	w.done = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *signinFailureWriter) Write(b []byte) (int, error) {
	w.done = true
	return w.ResponseWriter.Write(b)
}

// auditSigninFailures wraps w so that an error answer to a sign-in
// attempt is audited.
func (s *Service) auditSigninFailures(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if s.audit == nil {
		return w
	}
	return &signinFailureWriter{ResponseWriter: w, s: s, r: r}
}

// auditCredentialAdded records an enrolment through an invite, or a device
// added by its signed-in owner.
func (s *Service) auditCredentialAdded(ctx context.Context, g registrant, c *Credential) error {
	e := audit.Event{Type: audit.CredentialAdded, Subject: c.PersonUID, Actor: c.PersonUID,
		Detail: map[string]any{"credential": b64url(c.ID), "aal": c.AAL, "name": c.Name}}
	if g.invite != "" {
		e.Type = audit.Enrolment
	}
	if g.sess != nil {
		e.SessionHash = audit.HashSession(g.sess.SID)
	}
	return s.recorder().Record(ctx, e)
}

// auditCredentialRevoked records a credential revoked by its owner.
func (s *Service) auditCredentialRevoked(ctx context.Context, sess *Session, c *Credential) error {
	return s.recorder().Record(ctx, audit.Event{Type: audit.CredentialRevoked, Subject: c.PersonUID, Actor: sess.PersonUID,
		SessionHash: audit.HashSession(sess.SID), Detail: map[string]any{"credential": b64url(c.ID), "by": "owner"}})
}
