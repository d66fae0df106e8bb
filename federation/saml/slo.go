package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/store"
	"github.com/nhsid/nhsid/web"
)

// pendingLogout is a validated LogoutRequest.
type pendingLogout struct {
	SPID       string `json:"sp"`
	EntityID   string `json:"entity_id"`
	RequestID  string `json:"request_id"`
	NameID     string `json:"name_id"`
	RelayState string `json:"relay_state,omitempty"`
}

// validateLogoutRequest checks an inbound LogoutRequest completely and
// records its ID against replay. An SP with a signing certificate must
// sign its LogoutRequests.
func (h *Handler) validateLogoutRequest(ctx context.Context, in *inbound) (*pendingLogout, *refusal) {
	vm, rf := h.verifyMessage(ctx, in, "LogoutRequest")
	if rf != nil {
		return nil, rf
	}
	entity := vm.sp.EntityID
	fail := func(reason, msg string, err error) *refusal {
		rf := refuse(reason, msg, err)
		rf.Heading = "This sign-out request cannot be accepted"
		rf.EntityID = entity
		return rf
	}
	var req crewjam.LogoutRequest
	if err := unmarshalElement(vm.root, &req); err != nil {
		return nil, fail("malformed", "The request is not valid.", err)
	}
	if req.Version != "2.0" || req.ID == "" || len(req.ID) > 256 {
		return nil, fail("malformed", "The request is not a valid SAML 2.0 request.", errors.New("version or ID"))
	}
	if req.Issuer == nil || req.Issuer.Value != entity {
		return nil, fail("malformed", "The request's issuer is not valid.", errors.New("issuer mismatch after verification"))
	}
	if err := h.checkInstant(req.IssueInstant); err != nil {
		return nil, fail("stale_request", "The request has expired. Go back to the service and try again.", err)
	}
	if req.NotOnOrAfter != nil && !h.now().Before(req.NotOnOrAfter.Add(h.cfg.ClockSkew)) {
		return nil, fail("stale_request", "The request has expired. Go back to the service and try again.", errors.New("past NotOnOrAfter"))
	}
	if (vm.signed || req.Destination != "") && req.Destination != h.url(PathSLO) {
		return nil, fail("bad_destination", "The request was meant for another identity provider.", fmt.Errorf("destination %q", req.Destination))
	}
	if req.NameID == nil || req.NameID.Value == "" {
		return nil, fail("malformed", "The request does not say who is signing out.", errors.New("no NameID"))
	}
	if err := h.deps.Store.RememberRequestID(ctx, entity, req.ID, h.now().Add(h.cfg.MaxRequestAge+2*h.cfg.ClockSkew), h.now()); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fail("replayed_request", "This sign-out request has already been used.", err)
		}
		return nil, unavailable(err)
	}
	return &pendingLogout{SPID: vm.sp.ID, EntityID: entity, RequestID: req.ID, NameID: req.NameID.Value, RelayState: in.Relay}, nil
}

// handleSLO receives an SP's LogoutRequest (Redirect or POST). A POSTed
// one is parked and continued by a same-site GET, which sees the session.
// A LogoutResponse (to a logout nhsid started) just shows the signed-out
// page.
func (h *Handler) handleSLO(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("SAMLResponse") || (r.Method == http.MethodPost && r.PostFormValue("SAMLResponse") != "") {
		h.signedOut(w, r)
		return
	}
	in, rf := readInbound(w, r, "SAMLRequest")
	if rf != nil {
		h.refuseRequest(w, r, rf, "")
		return
	}
	pl, rf := h.validateLogoutRequest(r.Context(), in)
	if rf != nil {
		h.refuseRequest(w, r, rf, "")
		return
	}
	if r.Method == http.MethodPost {
		h.park(w, r, pendingLogoutPrefix, PathSLOContinue, pl)
		return
	}
	h.logout(w, r, pl)
}

func (h *Handler) handleSLOContinue(w http.ResponseWriter, r *http.Request) {
	var pl pendingLogout
	if rf := h.unpark(r, pendingLogoutPrefix, &pl); rf != nil {
		h.refuseRequest(w, r, rf, "")
		return
	}
	h.logout(w, r, &pl)
}

// sessionEnder is authn.Service's global session end (every listener is
// told); without it the session is only marked ended.
type sessionEnder interface {
	EndSession(ctx context.Context, sid, reason string) error
}

// logout ends the browser's session when it belongs to the NameID, and
// answers the SP with a signed LogoutResponse.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, pl *pendingLogout) {
	ctx := r.Context()
	status, sub := crewjam.StatusSuccess, ""
	sess, err := h.deps.Authn.CurrentSession(r)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	if sess != nil {
		if sess.PersonUID != pl.NameID {
			status, sub = crewjam.StatusRequester, "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal"
		} else if ender, ok := h.deps.Authn.(sessionEnder); ok {
			// The global path: revokes the session's tokens and tells the
			// other OIDC and SAML participants (and audits the logout).
			if err := ender.EndSession(ctx, sess.SID, authn.EndLogout); err != nil {
				h.refuseRequest(w, r, unavailable(err), "")
				return
			}
		} else if h.deps.Sessions != nil {
			now := h.now()
			_, err := h.deps.Sessions.UpdateSession(ctx, sess.IDHash, func(s *authn.Session) error {
				if s.EndedAt.IsZero() {
					s.EndedAt, s.EndReason = now, "saml_logout"
				}
				return nil
			})
			if err != nil {
				h.refuseRequest(w, r, unavailable(err), "")
				return
			}
			if err := h.deps.Audit.Record(ctx, audit.Event{Type: audit.Logout, Outcome: audit.Success, Subject: sess.PersonUID,
				Client: clip(pl.EntityID, 500), SessionHash: audit.HashSession(sess.SID), Detail: map[string]any{"kind": "saml"}}); err != nil {
				h.log.ErrorContext(ctx, "audit saml logout", "err", err)
			}
		}
	}
	sp, err := h.deps.Store.GetServiceProvider(ctx, pl.SPID)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	var ep *Endpoint
	for _, binding := range []string{crewjam.HTTPRedirectBinding, crewjam.HTTPPostBinding} {
		for i := range sp.SLO {
			if sp.SLO[i].Binding == binding && ep == nil {
				ep = &sp.SLO[i]
			}
		}
	}
	if ep == nil {
		h.signedOut(w, r)
		return
	}
	dest := ep.Location
	if ep.ResponseLocation != "" {
		dest = ep.ResponseLocation
	}
	signer, cert, _, err := h.deps.Signing.SAMLSigning()
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	id, err := newSAMLID()
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	lr := &crewjam.LogoutResponse{ID: id, InResponseTo: pl.RequestID, Version: "2.0", IssueInstant: h.now().UTC(), Destination: dest,
		Issuer: &crewjam.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: h.EntityID()},
		Status: crewjam.Status{StatusCode: crewjam.StatusCode{Value: status}}}
	if sub != "" {
		lr.Status.StatusCode.StatusCode = &crewjam.StatusCode{Value: sub}
	}
	if ep.Binding == crewjam.HTTPRedirectBinding {
		loc, err := redirectMessage(dest, "SAMLResponse", lr.Element(), pl.RelayState, signer)
		if err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
		noStore(w)
		http.Redirect(w, r, loc, http.StatusFound)
		return
	}
	sc, err := signingContext(signer, cert)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	sig, err := signEnveloped(sc, lr.Element())
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	lr.Signature = sig
	doc := etree.NewDocument()
	doc.SetRoot(lr.Element())
	raw, err := doc.WriteToBytes()
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	h.postForm(w, r, dest, "SAMLResponse", raw, pl.RelayState)
}

// redirectMessage encodes el for the HTTP-Redirect binding and signs the
// query string with RSA-SHA256.
func redirectMessage(dest, field string, el *etree.Element, relay string, signer crypto.Signer) (string, error) {
	doc := etree.NewDocument()
	doc.SetRoot(el)
	raw, err := doc.WriteToBytes()
	if err != nil {
		return "", fmt.Errorf("serialise: %w", err)
	}
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	if _, err := fw.Write(raw); err != nil {
		return "", fmt.Errorf("deflate: %w", err)
	}
	if err := fw.Close(); err != nil {
		return "", fmt.Errorf("deflate: %w", err)
	}
	q := field + "=" + url.QueryEscape(base64.StdEncoding.EncodeToString(buf.Bytes()))
	if relay != "" {
		q += "&RelayState=" + url.QueryEscape(relay)
	}
	q += "&SigAlg=" + url.QueryEscape(dsig.RSASHA256SignatureMethod)
	sum := sha256.Sum256([]byte(q))
	sig, err := signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	q += "&Signature=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig))
	u, err := url.Parse(dest)
	if err != nil {
		return "", fmt.Errorf("destination: %w", err)
	}
	if u.RawQuery != "" {
		q = u.RawQuery + "&" + q
	}
	u.RawQuery = q
	return u.String(), nil
}

func (h *Handler) signedOut(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if err := web.Render(w, http.StatusOK, "signed_out", pageData{Title: "You have signed out"}); err != nil {
		h.log.ErrorContext(r.Context(), "render signed out", "err", err)
	}
}
