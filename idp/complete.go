package idp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
)

// A sign-in that needs nothing more from the person (no role to choose, no
// refusal to show) is completed in the login finish itself: CompleteFlow
// issues the authorization code there, and the code's rows, its audit
// events, the session participant and the end of the flow go in the same
// write pipeline as the sign-in's own writes (one round trip, one commit,
// all or nothing). The finish reply's redirect is still an internal resume
// URL (DESIGN.md): it carries the authorize response's redirect sealed
// (AES-256-GCM under a key derived from the global secret, bound to the
// flow id and the browser-binding cookie, and short-lived), so the resume
// answers it with no database work. Anything else resumes as before.

// resumeSealLabel derives the sealing key from a global secret.
const resumeSealLabel = "nhsid authorize resume v1"

// maxResumeResult bounds the sealed result a resume accepts.
const maxResumeResult = 8 << 10

// resumeSealers returns the AEADs for sealed results: the current global
// secret's first (it seals), then the rotated ones' (they still open, so
// that a rotation does not break sign-ins in flight between replicas).
func resumeSealers(cfg Config) ([]cipher.AEAD, error) {
	var out []cipher.AEAD
	for _, secret := range append([][]byte{cfg.GlobalSecret}, cfg.RotatedGlobalSecrets...) {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(resumeSealLabel))
		block, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, fmt.Errorf("resume sealing key: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("resume sealing key: %w", err)
		}
		out = append(out, aead)
	}
	return out, nil
}

// sealResume returns the resume URL that sends the browser bound by
// bindingHash on to location until exp.
func (p *Provider) sealResume(flowID string, bindingHash []byte, location string, exp time.Time) (string, error) {
	aead := p.resumeSealers[0]
	plain := make([]byte, 8, 8+len(bindingHash)+len(location))
	binary.BigEndian.PutUint64(plain, uint64(exp.Unix()))
	plain = append(plain, bindingHash...)
	plain = append(plain, location...)
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal resume: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, plain, []byte(flowID))
	return PathResume + "?flow=" + url.QueryEscape(flowID) + "&result=" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// openResume opens a sealed result of flow flowID.
func (p *Provider) openResume(flowID, result string) (bindingHash []byte, location string, exp time.Time, err error) {
	if len(result) > maxResumeResult {
		return nil, "", exp, errors.New("sealed result too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(result)
	if err != nil {
		return nil, "", exp, fmt.Errorf("sealed result: %w", err)
	}
	for _, aead := range p.resumeSealers {
		if len(raw) < aead.NonceSize()+aead.Overhead() {
			break
		}
		plain, oerr := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(flowID))
		if oerr != nil {
			continue
		}
		if len(plain) < 8+sha256.Size {
			return nil, "", exp, errors.New("sealed result too short")
		}
		exp = time.Unix(int64(binary.BigEndian.Uint64(plain)), 0)
		return plain[8 : 8+sha256.Size], string(plain[8+sha256.Size:]), exp, nil
	}
	return nil, "", exp, errors.New("sealed result does not open")
}

// resumeCompleted answers a resume whose flow CompleteFlow finished: the
// sealed redirect, if it opens for this flow, is unexpired and this browser
// holds the flow's binding cookie.
func (p *Provider) resumeCompleted(w http.ResponseWriter, r *http.Request, flowID, result string) {
	bindingHash, location, exp, err := p.openResume(flowID, result)
	if err == nil && !p.deps.Authn.BoundTo(r, bindingHash) {
		err = errors.New("flow not bound to this browser")
	}
	if err != nil {
		apierror.Write(w, r, p.log, apierror.New(http.StatusBadRequest, "invalid_flow",
			"This sign-in link is not valid in this browser. Go back to the service you were using and start again.", err))
		return
	}
	if !p.now().Before(exp) {
		apierror.Write(w, r, p.log, apierror.New(http.StatusBadRequest, "expired_flow",
			"This sign-in has timed out. Go back to the service you were using and start again.", nil))
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}

// CompleteFlow implements authn.FlowCompleter for OpenID Connect flows:
// it issues the code with the sign-in's writes (queued in wctx) when the
// flow needs nothing more, and returns the sealed resume URL. A flow that
// needs a role choice, is refused, answers by form_post, or fails a check
// is left to the resume, which decides it as before (nothing is queued).
func (p *Provider) CompleteFlow(ctx, wctx context.Context, r *http.Request, f *authn.Flow, as *authn.Session, person policy.Person) (string, func(), error) {
	if f.Kind != "oidc" {
		return "", nil, nil
	}
	rf, err := p.resolveFlow(ctx, r, f, as)
	if err != nil || rf.out.NeedChoice || rf.out.Denied {
		return "", nil, nil
	}
	switch rf.ar.GetResponseMode() {
	case fosite.ResponseModeDefault, fosite.ResponseModeQuery, fosite.ResponseModeFragment:
	default:
		return "", nil, nil
	}
	sess, err := p.grant(rf.ar, rf.client, person, as, rf.acr, f.RequestedAt, rf.out.RoleID)
	if err != nil {
		return "", nil, nil
	}
	// fosite refuses a session authenticated more than 5 s ahead of the
	// wall clock, and only once it has begun writing the code; nhsid's own
	// clock is the wall clock except in tests that move it.
	if as.AuthTime.After(time.Now().Add(time.Second)) {
		return "", nil, nil
	}
	firstUse, err := p.firstUse(ctx, rf.ar, sess)
	if err != nil {
		return "", nil, nil
	}
	// From here on the writes are queued: a failure fails the sign-in.
	if err := p.auditRoleAuto(wctx, rf.client, as, rf.out, f.SelectedRoleID, rf.sessionRole); err != nil {
		return "", nil, fmt.Errorf("complete sign-in: %w", err)
	}
	// The flow is not deleted here: authn ends it (EndFlow), so that a
	// concurrent finish of the same ceremony still fails.
	resp, err := p.queueIssue(wctx, rf.ar, sess, rf.client.ID, "", firstUse)
	if err != nil {
		return "", nil, fmt.Errorf("complete sign-in: %w", err)
	}
	cw := &captureWriter{h: http.Header{}}
	p.oauth.WriteAuthorizeResponse(ctx, cw, rf.ar, resp)
	location := cw.h.Get("Location")
	if location == "" || cw.code < 300 || cw.code >= 400 {
		return "", nil, fmt.Errorf("complete sign-in: the authorize response is not a redirect (%d)", cw.code)
	}
	next, err := p.sealResume(f.ID, f.BindingHash, location, p.now().Add(p.cfg.AuthCodeTTL))
	if err != nil {
		return "", nil, err
	}
	sent := func() {
		if firstUse {
			p.knownUse.add(sess.GetSubject(), rf.client.ID)
		}
	}
	return next, sent, nil
}
