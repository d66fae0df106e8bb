package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/beevik/etree"
	crewjam "github.com/crewjam/saml"

	"github.com/nhsid/nhsid/store"
)

// refusal is a request nhsid will not serve: what the user sees, and why
// (for the log and the audit trail).
type refusal struct {
	Status   int
	Heading  string
	Message  string
	Reason   string // short machine-readable reason
	EntityID string
	Err      error
}

func (r *refusal) Error() string {
	if r.Err != nil {
		return r.Reason + ": " + r.Err.Error()
	}
	return r.Reason
}

func (r *refusal) Unwrap() error { return r.Err }

func refuse(reason, message string, err error) *refusal {
	return &refusal{Status: http.StatusBadRequest, Heading: "This sign-in request cannot be accepted",
		Message: message, Reason: reason, Err: err}
}

// inbound is a protocol message as it arrived.
type inbound struct {
	Binding  string // crewjam.HTTPRedirectBinding or crewjam.HTTPPostBinding
	XML      []byte
	Relay    string
	redirect redirectParams // for Redirect: the raw params the signature covers
}

// readInbound extracts msgName ("SAMLRequest") from a Redirect (GET,
// deflated) or POST (form, base64) message, bounded in size.
func readInbound(w http.ResponseWriter, r *http.Request, msgName string) (*inbound, *refusal) {
	switch r.Method {
	case http.MethodGet:
		if len(r.URL.RawQuery) > MaxXMLBytes*2 {
			return nil, refuse("oversized", "The request is too large.", errors.New("query too large"))
		}
		p, err := rawRedirectParams(r.URL.RawQuery, msgName)
		if err != nil {
			return nil, refuse("malformed", "The request is not valid.", err)
		}
		q := r.URL.Query()
		if q.Get(msgName) == "" {
			return nil, refuse("malformed", "The request is missing.", errors.New("no "+msgName))
		}
		compressed, err := decodeB64(q.Get(msgName))
		if err != nil {
			return nil, refuse("malformed", "The request is not valid.", fmt.Errorf("base64: %w", err))
		}
		raw, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(compressed)), MaxXMLBytes+1))
		if err != nil {
			return nil, refuse("malformed", "The request is not valid.", fmt.Errorf("inflate: %w", err))
		}
		if len(raw) > MaxXMLBytes {
			return nil, refuse("oversized", "The request is too large.", errors.New("inflated request too large"))
		}
		return &inbound{Binding: crewjam.HTTPRedirectBinding, XML: raw, Relay: q.Get("RelayState"), redirect: p}, nil
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, MaxXMLBytes*2)
		if err := r.ParseForm(); err != nil {
			return nil, refuse("oversized", "The request is too large or not a form.", err)
		}
		if r.PostForm.Get(msgName) == "" {
			return nil, refuse("malformed", "The request is missing.", errors.New("no "+msgName))
		}
		raw, err := decodeB64(r.PostForm.Get(msgName))
		if err != nil {
			return nil, refuse("malformed", "The request is not valid.", fmt.Errorf("base64: %w", err))
		}
		if len(raw) > MaxXMLBytes {
			return nil, refuse("oversized", "The request is too large.", errors.New("request too large"))
		}
		return &inbound{Binding: crewjam.HTTPPostBinding, XML: raw, Relay: r.PostForm.Get("RelayState")}, nil
	}
	return nil, &refusal{Status: http.StatusMethodNotAllowed, Heading: "Method not allowed", Message: "Use GET or POST.", Reason: "method"}
}

// pendingRequest is a validated AuthnRequest (or an IdP-initiated
// sign-on), kept in the sign-in flow until a response is sent.
type pendingRequest struct {
	SPID       string `json:"sp"`
	EntityID   string `json:"entity_id"`
	RequestID  string `json:"request_id,omitempty"`
	ACS        string `json:"acs"`
	RelayState string `json:"relay_state,omitempty"`
	ForceAuthn bool   `json:"force_authn,omitempty"`
	IsPassive  bool   `json:"is_passive,omitempty"`
	// MinAAL is what RequestedAuthnContext asks for (0: nothing).
	MinAAL int `json:"min_aal,omitempty"`
}

// verifiedMessage is the result of checking a signed or unsigned message
// from an SP: the root element to read (the signed one when signed).
type verifiedMessage struct {
	sp     ServiceProvider
	md     *SPMetadata
	root   *etree.Element
	signed bool
}

// verifyMessage parses in, finds the SP by Issuer and checks the
// signature: verified whenever present; required when the SP promised to
// sign AuthnRequests, and for a LogoutRequest whenever the SP has a
// signing certificate.
func (h *Handler) verifyMessage(ctx context.Context, in *inbound, wantTag string) (*verifiedMessage, *refusal) {
	doc, err := parseXML(in.XML)
	if err != nil {
		return nil, refuse("malformed_xml", "The request is not valid XML or uses features nhsid refuses.", err)
	}
	root := doc.Root()
	if root.Tag != wantTag || root.NamespaceURI() != nsProtocol {
		return nil, refuse("malformed", "The request is not a SAML "+wantTag+".", fmt.Errorf("root is %s", root.FullTag()))
	}
	issuers := 0
	var issuer string
	for _, c := range root.ChildElements() {
		if c.Tag == "Issuer" && c.NamespaceURI() == nsAssertion {
			issuers++
			issuer = c.Text()
		}
	}
	if issuers != 1 || issuer == "" {
		return nil, refuse("malformed", "The request does not name the service it comes from.", errors.New("want one Issuer"))
	}
	sp, err := h.deps.Store.GetServiceProviderByEntityID(ctx, issuer)
	if errors.Is(err, store.ErrNotFound) {
		rf := refuse("unknown_sp", "The service that sent you here is not registered with NHS identity.", err)
		rf.EntityID = issuer
		return nil, rf
	}
	if err != nil {
		return nil, &refusal{Status: http.StatusServiceUnavailable, Heading: "Sign-in is unavailable",
			Message: "Try again shortly.", Reason: "store", EntityID: issuer, Err: err}
	}
	md, err := ParseSPMetadata(sp.MetadataXML)
	if err != nil {
		rf := refuse("bad_metadata", "The service's registration is damaged. Contact its administrator.", err)
		rf.EntityID = issuer
		return nil, rf
	}
	requireSigned := md.AuthnRequestsSigned || (wantTag == "LogoutRequest" && len(md.SigningCerts) > 0)
	now := h.now()
	vm := &verifiedMessage{sp: sp, md: md, root: root}
	bad := func(err error) *refusal {
		rf := refuse("bad_signature", "The request's signature could not be verified.", err)
		rf.EntityID = issuer
		return rf
	}
	switch in.Binding {
	case crewjam.HTTPRedirectBinding:
		if direct, all := signatureChildren(root); len(direct)+all > 0 {
			// The Redirect binding signs the query string; an embedded
			// XML signature would go unchecked, so it is refused.
			return nil, bad(errors.New("XML signature in a Redirect binding message"))
		}
		if in.redirect.signature == "" && in.redirect.sigAlg == "" {
			if requireSigned {
				return nil, bad(errUnsigned)
			}
			break
		}
		sigAlg, err1 := queryUnescape(in.redirect.sigAlg)
		sigB64, err2 := queryUnescape(in.redirect.signature)
		if err := errors.Join(err1, err2); err != nil || sigAlg == "" || sigB64 == "" {
			return nil, bad(fmt.Errorf("SigAlg or Signature missing or malformed: %v", err))
		}
		sig, err := decodeB64(sigB64)
		if err != nil {
			return nil, bad(err)
		}
		if err := verifyRedirect(in.redirect, sigAlg, sig, md.SigningCerts, now); err != nil {
			return nil, bad(err)
		}
		vm.signed = true
	case crewjam.HTTPPostBinding:
		signed, err := verifyEnveloped(root, md.SigningCerts, now)
		if errors.Is(err, errUnsigned) {
			if requireSigned {
				return nil, bad(err)
			}
			break
		}
		if err != nil {
			return nil, bad(err)
		}
		vm.root, vm.signed = signed, true
	}
	return vm, nil
}

// checkInstant bounds IssueInstant: not older than MaxRequestAge, not
// further ahead than ClockSkew.
func (h *Handler) checkInstant(t time.Time) error {
	now := h.now()
	if t.IsZero() {
		return errors.New("no IssueInstant")
	}
	if t.Before(now.Add(-h.cfg.MaxRequestAge - h.cfg.ClockSkew)) {
		return fmt.Errorf("issued at %s, too old", t.UTC().Format(time.RFC3339))
	}
	if t.After(now.Add(h.cfg.ClockSkew)) {
		return fmt.Errorf("issued at %s, in the future", t.UTC().Format(time.RFC3339))
	}
	return nil
}

// validateAuthnRequest checks an inbound AuthnRequest completely and
// records its ID against replay.
func (h *Handler) validateAuthnRequest(ctx context.Context, in *inbound) (*pendingRequest, *refusal) {
	vm, rf := h.verifyMessage(ctx, in, "AuthnRequest")
	if rf != nil {
		return nil, rf
	}
	entity := vm.sp.EntityID
	fail := func(reason, msg string, err error) *refusal {
		rf := refuse(reason, msg, err)
		rf.EntityID = entity
		return rf
	}
	var req crewjam.AuthnRequest
	if err := unmarshalElement(vm.root, &req); err != nil {
		return nil, fail("malformed", "The request is not valid.", err)
	}
	if req.Version != "2.0" {
		return nil, fail("malformed", "The request is not SAML 2.0.", fmt.Errorf("version %q", req.Version))
	}
	if req.ID == "" || len(req.ID) > 256 {
		return nil, fail("malformed", "The request has no valid ID.", errors.New("bad ID"))
	}
	if req.Issuer == nil || req.Issuer.Value != entity {
		return nil, fail("malformed", "The request's issuer is not valid.", errors.New("issuer mismatch after verification"))
	}
	if err := h.checkInstant(req.IssueInstant); err != nil {
		return nil, fail("stale_request", "The request has expired or its clock is wrong. Go back to the service and try again.", err)
	}
	if (vm.signed || req.Destination != "") && req.Destination != h.url(PathSSO) {
		return nil, fail("bad_destination", "The request was meant for another identity provider.", fmt.Errorf("destination %q", req.Destination))
	}
	if req.ProtocolBinding != "" && req.ProtocolBinding != crewjam.HTTPPostBinding {
		return nil, fail("unsupported_binding", "The service asked for a response binding nhsid does not offer.", fmt.Errorf("binding %q", req.ProtocolBinding))
	}
	acs, err := pickACS(vm.sp, req.AssertionConsumerServiceURL, req.AssertionConsumerServiceIndex)
	if err != nil {
		return nil, fail("bad_acs", "The address to return you to is not registered for this service.", err)
	}
	minAAL := 0
	if rac := req.RequestedAuthnContext; rac != nil && rac.AuthnContextClassRef != "" {
		switch rac.AuthnContextClassRef {
		case ClassAAL3:
			minAAL = 3
		case ClassAAL2:
			minAAL = 2
		default:
			if rac.Comparison == "exact" || rac.Comparison == "" {
				return nil, fail("no_authn_context", "The service asked for a kind of sign-in nhsid does not offer.",
					fmt.Errorf("class %q", rac.AuthnContextClassRef))
			}
		}
	}
	if err := h.deps.Store.RememberRequestID(ctx, entity, req.ID, h.now().Add(h.cfg.MaxRequestAge+2*h.cfg.ClockSkew), h.now()); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fail("replayed_request", "This sign-in request has already been used. Go back to the service and start again.", err)
		}
		return nil, &refusal{Status: http.StatusServiceUnavailable, Heading: "Sign-in is unavailable", Message: "Try again shortly.",
			Reason: "store", EntityID: entity, Err: err}
	}
	return &pendingRequest{
		SPID: vm.sp.ID, EntityID: entity, RequestID: req.ID, ACS: acs, RelayState: in.Relay,
		ForceAuthn: req.ForceAuthn != nil && *req.ForceAuthn, IsPassive: req.IsPassive != nil && *req.IsPassive, MinAAL: minAAL,
	}, nil
}

// pickACS resolves the ACS URL of a request against the SP's metadata:
// by index, by exact URL, or the default HTTP-POST endpoint. Only HTTP-POST
// endpoints with http(s) URLs qualify.
func pickACS(sp ServiceProvider, acsURL, acsIndex string) (string, error) {
	usable := func(e Endpoint) bool {
		return e.Binding == crewjam.HTTPPostBinding && checkEndpointURL(e.Location) == nil
	}
	if acsIndex != "" {
		idx, err := strconv.Atoi(acsIndex)
		if err != nil {
			return "", fmt.Errorf("AssertionConsumerServiceIndex %q", acsIndex)
		}
		for _, e := range sp.ACS {
			if e.Index == idx && usable(e) && (acsURL == "" || acsURL == e.Location) {
				return e.Location, nil
			}
		}
		return "", fmt.Errorf("no HTTP-POST ACS with index %d", idx)
	}
	if acsURL != "" {
		if err := checkEndpointURL(acsURL); err != nil {
			return "", fmt.Errorf("ACS URL %q: %w", acsURL, err)
		}
		for _, e := range sp.ACS {
			if e.Location == acsURL && usable(e) {
				return e.Location, nil
			}
		}
		return "", fmt.Errorf("ACS URL %q not in metadata", acsURL)
	}
	return defaultACS(sp)
}

// defaultACS is the SP's default HTTP-POST ACS, else its first.
func defaultACS(sp ServiceProvider) (string, error) {
	for _, e := range sp.ACS {
		if e.IsDefault && e.Binding == crewjam.HTTPPostBinding && checkEndpointURL(e.Location) == nil {
			return e.Location, nil
		}
	}
	for _, e := range sp.ACS {
		if e.Binding == crewjam.HTTPPostBinding && checkEndpointURL(e.Location) == nil {
			return e.Location, nil
		}
	}
	return "", errors.New("no HTTP-POST ACS in metadata")
}

// unmarshalElement decodes el into v through its serialisation.
func unmarshalElement(el *etree.Element, v any) error {
	doc := etree.NewDocument()
	doc.SetRoot(el.Copy())
	raw, err := doc.WriteToBytes()
	if err != nil {
		return fmt.Errorf("serialise: %w", err)
	}
	if err := xml.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}
