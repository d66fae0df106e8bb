package saml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
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
	// QueueSize bounds the queued logouts; more are dropped and logged
	// [10000].
	QueueSize int
}

func (c SLOConfig) withDefaults() SLOConfig {
	if c.RequestTTL <= 0 {
		c.RequestTTL = 2 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = 5 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Minute
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 10000
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

// sloJob is one LogoutRequest owed to one SP for one ended session.
type sloJob struct {
	sid, entityID, location, nameID, sessionIndex, reason string
	attempts                                              int
	next                                                  time.Time
	busy                                                  bool
}

// BackchannelLogout sends SAML LogoutRequests over the SOAP binding to
// the SPs of an ended session. It implements authn.SessionEndListener:
// SessionEnded only queues (in memory, bounded) and a goroutine delivers
// with exponential backoff through the guarded outbound client. The queue
// is not durable: logouts still queued when the process stops are lost.
type BackchannelLogout struct {
	h    *Handler
	cfg  SLOConfig
	http *http.Client

	mu       sync.Mutex
	jobs     []*sloJob
	draining bool
	// manual (tests) leaves delivery to Deliver calls.
	manual bool
}

// BackchannelLogout returns the handler's back-channel Single Logout
// sender, making it on the first call with client (nil: a default guarded
// outbound client) and cfg; later calls return the same one. Register it
// with authn's Service.OnSessionEnd.
func (h *Handler) BackchannelLogout(client *http.Client, cfg SLOConfig) *BackchannelLogout {
	if b := h.slo.Load(); b != nil {
		return b
	}
	if client == nil {
		client = outbound.New(outbound.Options{})
	}
	b := &BackchannelLogout{h: h, cfg: cfg.withDefaults(), http: client}
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

var _ authn.SessionEndListener = (*BackchannelLogout)(nil)

// SessionEnded implements authn.SessionEndListener: it queues a
// LogoutRequest for every SP of the session whose metadata has a
// SingleLogoutService on the SOAP binding. SPs with only front-channel
// (Redirect or POST) logout cannot be reached from here and are skipped.
// It never calls an SP itself.
func (b *BackchannelLogout) SessionEnded(ctx context.Context, s authn.Session, reason string) {
	ctx = context.WithoutCancel(ctx)
	h := b.h
	parts, err := h.deps.Store.ListParticipants(ctx, s.SID)
	if err != nil {
		h.log.ErrorContext(ctx, "saml slo: list participants", "err", err)
		return
	}
	queued := 0
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
		j := &sloJob{sid: s.SID, entityID: p.EntityID, location: loc, nameID: nameID, sessionIndex: p.SessionIndex,
			reason: reason, next: h.now()}
		if b.enqueue(j) {
			queued++
		} else {
			h.log.ErrorContext(ctx, "saml slo: queue full, logout dropped", "sp", p.EntityID)
		}
	}
	if queued > 0 {
		b.startDrain()
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

func (b *BackchannelLogout) enqueue(j *sloJob) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.jobs) >= b.cfg.QueueSize {
		return false
	}
	b.jobs = append(b.jobs, j)
	return true
}

// startDrain starts the delivery goroutine unless one runs. It ends when
// the queue is empty.
func (b *BackchannelLogout) startDrain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.draining || b.manual {
		return
	}
	b.draining = true
	go b.drain()
}

func (b *BackchannelLogout) drain() {
	ctx := context.Background()
	for {
		if _, err := b.Deliver(ctx); err != nil {
			b.h.log.ErrorContext(ctx, "saml slo: deliver", "err", err)
		}
		b.mu.Lock()
		if len(b.jobs) == 0 {
			b.draining = false
			b.mu.Unlock()
			return
		}
		now := b.h.now()
		wait := b.cfg.MaxBackoff
		for _, j := range b.jobs {
			wait = min(wait, j.next.Sub(now))
		}
		b.mu.Unlock()
		time.Sleep(max(wait, 200*time.Millisecond))
	}
}

// Deliver attempts every due, idle job once and returns how many SPs
// accepted their LogoutRequest.
func (b *BackchannelLogout) Deliver(ctx context.Context) (int, error) {
	now := b.h.now()
	b.mu.Lock()
	var due []*sloJob
	for _, j := range b.jobs {
		if !j.busy && !j.next.After(now) {
			j.busy = true
			due = append(due, j)
		}
	}
	b.mu.Unlock()
	delivered := 0
	var errs []error
	for _, j := range due {
		err := b.attempt(ctx, j)
		b.mu.Lock()
		j.busy = false
		j.attempts++
		done := err == nil || j.attempts >= b.cfg.MaxAttempts
		if !done {
			j.next = b.h.now().Add(b.cfg.backoff(j.attempts))
		} else {
			b.remove(j)
		}
		b.mu.Unlock()
		b.record(ctx, j, err, done)
		if err == nil {
			delivered++
		} else if done {
			errs = append(errs, fmt.Errorf("saml slo to %s: %w", j.entityID, err))
		}
	}
	return delivered, errors.Join(errs...)
}

// remove drops j from the queue; b.mu is held.
func (b *BackchannelLogout) remove(j *sloJob) {
	for i, x := range b.jobs {
		if x == j {
			b.jobs = append(b.jobs[:i], b.jobs[i+1:]...)
			return
		}
	}
}

// record logs and audits one attempt.
func (b *BackchannelLogout) record(ctx context.Context, j *sloJob, err error, done bool) {
	h := b.h
	outcome, detail := audit.Success, map[string]any{"kind": "saml_backchannel", "attempt": j.attempts, "reason": j.reason}
	if err != nil {
		outcome = audit.Failure
		detail["error"] = clip(err.Error(), 200)
		detail["final"] = done
		h.log.WarnContext(ctx, "saml slo: delivery failed", "sp", j.entityID, "attempt", j.attempts, "final", done, "err", err)
	} else {
		h.log.InfoContext(ctx, "saml slo: delivered", "sp", j.entityID, "attempt", j.attempts)
	}
	if aerr := h.deps.Audit.Record(ctx, audit.Event{Type: audit.Logout, Outcome: outcome, Subject: j.nameID,
		Client: clip(j.entityID, 500), SessionHash: audit.HashSession(j.sid), Detail: detail}); aerr != nil {
		h.log.ErrorContext(ctx, "saml slo: audit", "err", aerr)
	}
}

// logoutRequest builds the signed LogoutRequest of j, fresh for each
// attempt (new ID, IssueInstant and NotOnOrAfter).
func (b *BackchannelLogout) logoutRequest(j *sloJob) (*etree.Element, error) {
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
	lr := &crewjam.LogoutRequest{ID: id, Version: "2.0", IssueInstant: now, NotOnOrAfter: &until, Destination: j.location,
		Issuer: &crewjam.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: h.EntityID()},
		NameID: &crewjam.NameID{Format: NameIDPersistent, NameQualifier: h.EntityID(), SPNameQualifier: j.entityID, Value: j.nameID}}
	if j.sessionIndex != "" {
		lr.SessionIndex = &crewjam.SessionIndex{Value: j.sessionIndex}
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

// attempt POSTs j's LogoutRequest to the SP. Any 2xx answer counts as
// delivered; a LogoutResponse with a non-success status is only logged.
func (b *BackchannelLogout) attempt(ctx context.Context, j *sloJob) error {
	el, err := b.logoutRequest(j)
	if err != nil {
		return err
	}
	raw, err := soapEnvelope(el)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.location, bytes.NewReader(raw))
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
		b.h.log.WarnContext(ctx, "saml slo: SP answered a non-success status", "sp", j.entityID, "status", st)
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
