package saml

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	"github.com/google/uuid"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/jobs"
	"github.com/nhsid/nhsid/internal/outbound"
)

// SOAP 1.1 envelope namespace and the SOAPAction SAML's SOAP binding uses.
const (
	soapEnvelopeNS = "http://schemas.xmlsoap.org/soap/envelope/"
	soapAction     = "http://www.oasis-open.org/committees/security"
)

// SLOConfig tunes back-channel Single Logout. Zero values take the
// defaults in brackets.
type SLOConfig struct {
	// RequestTTL is how long a LogoutRequest is valid (NotOnOrAfter) [2m].
	RequestTTL time.Duration
	// MaxAttempts bounds the attempts per SP and session [8].
	MaxAttempts int
	// InitialBackoff is the wait after the first failure, doubled after
	// each further one [5s], up to MaxBackoff [10m].
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// PollInterval is how often RunLogoutDelivery looks for due logouts
	// when nothing wakes it [5s].
	PollInterval time.Duration
	// Lease is how long a claimed logout is hidden from other replicas
	// while one tries it [2m]; it must exceed an attempt's timeout (30 s).
	Lease time.Duration
	// Parallel is how many logouts one pass claims and sends at once [8].
	Parallel int
	// Observe, if set, is told each attempt's outcome: "delivered",
	// "retry" or "given_up" (metrics).
	Observe func(outcome string)
}

func (c SLOConfig) withDefaults() SLOConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RequestTTL, 2*time.Minute)
	def(&c.InitialBackoff, 5*time.Second)
	def(&c.MaxBackoff, 10*time.Minute)
	def(&c.PollInterval, 5*time.Second)
	def(&c.Lease, 2*time.Minute)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	return c
}

func (c SLOConfig) backoff(n int) time.Duration {
	d := c.InitialBackoff
	for i := 1; i < n && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

// sloAttemptTimeout bounds one POST to an SP.
const sloAttemptTimeout = 30 * time.Second

// BackchannelLogout sends SAML LogoutRequests over the SOAP binding to
// the SPs of an ended session. It implements authn.SessionEndListener:
// SessionEnded only writes one row per SP to the store's durable queue
// (LogoutQueue), and RunLogoutDelivery, on every replica, claims due rows
// and delivers them through the guarded outbound client, with exponential
// backoff. A logout queued before a restart, or on a replica that then
// stopped, is delivered by whichever replica runs next.
type BackchannelLogout struct {
	h    *Handler
	cfg  SLOConfig
	http *http.Client
	wake chan struct{}
}

// BackchannelLogout returns the handler's back-channel Single Logout
// sender, making it on the first call with client (nil: a default guarded
// outbound client) and cfg; later calls return the same one. Register it
// with authn's Service.OnSessionEnd, and run RunLogoutDelivery.
func (h *Handler) BackchannelLogout(client *http.Client, cfg SLOConfig) *BackchannelLogout {
	if b := h.slo.Load(); b != nil {
		return b
	}
	if client == nil {
		client = outbound.New(outbound.Options{})
	}
	b := &BackchannelLogout{h: h, cfg: cfg.withDefaults(), http: client, wake: make(chan struct{}, 1)}
	if !h.slo.CompareAndSwap(nil, b) {
		return h.slo.Load()
	}
	return b
}

// DeliverLogouts sends every due back-channel LogoutRequest now and
// returns how many SPs accepted theirs. Without a BackchannelLogout it
// does nothing. Tests call it to deliver deterministically.
func (h *Handler) DeliverLogouts(ctx context.Context) (int, error) {
	b := h.slo.Load()
	if b == nil {
		return 0, nil
	}
	return b.Deliver(ctx)
}

// RunLogoutDelivery delivers queued back-channel logouts until ctx ends:
// at once when a session ends on this replica, and every PollInterval for
// retries and for logouts queued elsewhere. Without a BackchannelLogout
// it returns at once.
func (h *Handler) RunLogoutDelivery(ctx context.Context) {
	b := h.slo.Load()
	if b == nil {
		return
	}
	jobs.Every(ctx, b.cfg.PollInterval, b.wake,
		func(ctx context.Context) error { _, err := b.Deliver(ctx); return err },
		func(err error) { h.log.ErrorContext(ctx, "saml slo: deliver", "err", err) })
}

var _ authn.SessionEndListener = (*BackchannelLogout)(nil)

// SessionEnded implements authn.SessionEndListener: it queues a
// LogoutRequest for every SP of the session whose metadata has a
// SingleLogoutService on the SOAP binding. SPs with only front-channel
// (Redirect or POST) logout cannot be reached from here and are skipped.
// It never calls an SP itself.
func (b *BackchannelLogout) SessionEnded(ctx context.Context, s authn.Session, reason string) {
	ctx = context.WithoutCancel(ctx)
	h := b.h
	q, ok := h.deps.Store.(LogoutQueue)
	if !ok {
		h.log.ErrorContext(ctx, "saml slo: the store has no logout queue; SPs not told")
		return
	}
	parts, err := h.deps.Store.ListParticipants(ctx, s.SID)
	if err != nil {
		h.log.ErrorContext(ctx, "saml slo: list participants", "err", err)
		return
	}
	queued := 0
	now := h.now()
	for _, p := range parts {
		sp, err := h.deps.Store.GetServiceProviderByEntityID(ctx, p.EntityID)
		if err != nil {
			h.log.WarnContext(ctx, "saml slo: participant's SP", "sp", p.EntityID, "err", err)
			continue
		}
		loc := soapSLO(sp)
		if loc == "" {
			h.log.InfoContext(ctx, "saml slo: SP has no SOAP SingleLogoutService, not told", "sp", p.EntityID)
			continue
		}
		nameID := p.NameID
		if nameID == "" {
			nameID = s.PersonUID
		}
		d := LogoutDelivery{ID: uuid.NewString(), EntityID: p.EntityID, Location: loc, SID: s.SID, NameID: nameID,
			SessionIndex: p.SessionIndex, Reason: reason, CreatedAt: now, NextAttemptAt: now}
		if err := q.EnqueueSAMLLogout(ctx, d); err != nil {
			h.log.ErrorContext(ctx, "saml slo: queue logout", "sp", p.EntityID, "err", err)
			continue
		}
		queued++
	}
	if queued > 0 {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// soapSLO is the SP's SOAP SingleLogoutService location, or "".
func soapSLO(sp ServiceProvider) string {
	for _, e := range sp.SLO {
		if e.Binding == crewjam.SOAPBinding {
			return e.Location
		}
	}
	return ""
}

// Deliver claims the due logouts, Parallel at a time, attempts each
// once, and returns how many SPs accepted theirs; its error reports the
// logouts given up in this call, and any failure to claim or record.
func (b *BackchannelLogout) Deliver(ctx context.Context) (int, error) {
	q, ok := b.h.deps.Store.(LogoutQueue)
	if !ok {
		return 0, nil
	}
	claim := func(ctx context.Context, n int) ([]LogoutDelivery, error) {
		now := b.h.now()
		ds, err := q.ClaimSAMLLogouts(ctx, now, now.Add(b.cfg.Lease), n)
		if err != nil {
			return nil, fmt.Errorf("saml slo: claim: %w", err)
		}
		return ds, nil
	}
	return outbound.Drain(ctx, b.cfg.Parallel, b.cfg.Parallel, claim, func(ctx context.Context, d LogoutDelivery) (bool, error) {
		return b.attemptOnce(ctx, q, d)
	})
}

// attemptOnce sends d once and records the outcome: delivered, retried
// later with backoff, or given up after MaxAttempts. Its error is the
// last failure of a logout given up, or a failure to record the attempt.
func (b *BackchannelLogout) attemptOnce(ctx context.Context, q LogoutQueue, d LogoutDelivery) (bool, error) {
	sendErr := b.attempt(ctx, d)
	end := b.h.now()
	updated, err := q.UpdateSAMLLogout(ctx, d.ID, func(x *LogoutDelivery) error {
		x.Attempts++
		if sendErr == nil {
			x.DeliveredAt, x.LastError = end, ""
			return nil
		}
		x.LastError = clip(sendErr.Error(), 200)
		if x.Attempts >= b.cfg.MaxAttempts {
			x.FailedAt = end
			return nil
		}
		x.NextAttemptAt = end.Add(b.cfg.backoff(x.Attempts))
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("saml slo: record attempt for %s: %w", d.EntityID, err)
	}
	gaveUp := !updated.FailedAt.IsZero()
	if b.cfg.Observe != nil {
		b.cfg.Observe(outbound.Outcome(sendErr == nil, gaveUp))
	}
	b.record(ctx, updated, sendErr, gaveUp)
	if sendErr != nil && gaveUp {
		return false, fmt.Errorf("saml slo to %s: %w", d.EntityID, sendErr)
	}
	return sendErr == nil, nil
}

// record logs and audits one attempt.
func (b *BackchannelLogout) record(ctx context.Context, d LogoutDelivery, err error, gaveUp bool) {
	h := b.h
	outcome, detail := audit.Success, map[string]any{"kind": "saml_backchannel", "attempt": d.Attempts, "reason": d.Reason}
	if err != nil {
		outcome = audit.Failure
		detail["error"] = clip(err.Error(), 200)
		detail["final"] = gaveUp
		h.log.WarnContext(ctx, "saml slo: delivery failed", "sp", d.EntityID, "attempt", d.Attempts, "final", gaveUp,
			"next_attempt_at", d.NextAttemptAt, "err", err)
	} else {
		h.log.InfoContext(ctx, "saml slo: delivered", "sp", d.EntityID, "attempt", d.Attempts)
	}
	if aerr := h.deps.Audit.Record(ctx, audit.Event{Type: audit.Logout, Outcome: outcome, Subject: d.NameID,
		Client: clip(d.EntityID, 500), SessionHash: audit.HashSession(d.SID), Detail: detail}); aerr != nil {
		h.log.ErrorContext(ctx, "saml slo: audit", "err", aerr)
	}
}

// logoutRequest builds the signed LogoutRequest of d, fresh for each
// attempt (new ID, IssueInstant and NotOnOrAfter).
func (b *BackchannelLogout) logoutRequest(d LogoutDelivery) (*etree.Element, error) {
	h := b.h
	signer, cert, _, err := h.deps.Signing.SAMLSigning()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	id, err := newSAMLID()
	if err != nil {
		return nil, err
	}
	now := h.now().UTC()
	until := now.Add(b.cfg.RequestTTL)
	lr := &crewjam.LogoutRequest{ID: id, Version: "2.0", IssueInstant: now, NotOnOrAfter: &until, Destination: d.Location,
		Issuer: &crewjam.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: h.EntityID()},
		NameID: &crewjam.NameID{Format: NameIDPersistent, NameQualifier: h.EntityID(), SPNameQualifier: d.EntityID, Value: d.NameID}}
	if d.SessionIndex != "" {
		lr.SessionIndex = &crewjam.SessionIndex{Value: d.SessionIndex}
	}
	sc, err := signingContext(signer, cert)
	if err != nil {
		return nil, err
	}
	sig, err := signEnveloped(sc, lr.Element())
	if err != nil {
		return nil, err
	}
	lr.Signature = sig
	return lr.Element(), nil
}

// soapEnvelope wraps el in a SOAP 1.1 envelope.
func soapEnvelope(el *etree.Element) ([]byte, error) {
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	env := doc.CreateElement("soap-env:Envelope")
	env.CreateAttr("xmlns:soap-env", soapEnvelopeNS)
	body := env.CreateElement("soap-env:Body")
	body.AddChild(el)
	raw, err := doc.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("serialise: %w", err)
	}
	return raw, nil
}

// attempt POSTs d's LogoutRequest to the SP. Any 2xx answer counts as
// delivered; a LogoutResponse with a non-success status is only logged.
func (b *BackchannelLogout) attempt(ctx context.Context, d LogoutDelivery) error {
	el, err := b.logoutRequest(d)
	if err != nil {
		return err
	}
	raw, err := soapEnvelope(el)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, sloAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Location, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", soapAction)
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if st := soapStatus(answer); st != "" && st != crewjam.StatusSuccess {
		b.h.log.WarnContext(ctx, "saml slo: SP answered a non-success status", "sp", d.EntityID, "status", st)
	}
	return nil
}

// soapStatus is the top StatusCode of a LogoutResponse in a SOAP answer,
// or "" when there is none to read.
func soapStatus(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	doc, err := parseXML(raw)
	if err != nil {
		return ""
	}
	el := doc.FindElement("//LogoutResponse/Status/StatusCode")
	if el == nil {
		return ""
	}
	return el.SelectAttrValue("Value", "")
}
