package saml

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// pendingTTL is how long a POSTed request waits for its same-site GET.
const pendingTTL = 2 * time.Minute

const (
	pendingAuthnPrefix  = "saml-authn:"
	pendingLogoutPrefix = "saml-logout:"
)

func randomID() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// handleSSO receives an AuthnRequest. It is validated at once (so a replay
// is caught whatever the binding); a POSTed one is then parked and the
// browser sent on with a 303 to a same-site GET, which carries the
// SameSite=Lax session cookie that the cross-site POST did not.
func (h *Handler) handleSSO(w http.ResponseWriter, r *http.Request) {
	in, rf := readInbound(w, r, "SAMLRequest")
	if rf != nil {
		h.refuseRequest(w, r, rf, "")
		return
	}
	pr, rf := h.validateAuthnRequest(r.Context(), in)
	if rf != nil {
		h.refuseRequest(w, r, rf, "")
		return
	}
	if r.Method == http.MethodPost {
		h.park(w, r, pendingAuthnPrefix, PathSSOContinue, pr)
		return
	}
	h.proceed(w, r, pr)
}

// park stores v and answers with a 303 to continuePath?req=<id>.
func (h *Handler) park(w http.ResponseWriter, r *http.Request, prefix, continuePath string, v any) {
	id, err := randomID()
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	if err := h.deps.Pending.PutChallenge(r.Context(), prefix+id, data, h.now().Add(pendingTTL)); err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	noStore(w)
	http.Redirect(w, r, continuePath+"?req="+url.QueryEscape(id), http.StatusSeeOther)
}

// unpark takes a parked request (once).
func (h *Handler) unpark(r *http.Request, prefix string, v any) *refusal {
	id := r.URL.Query().Get("req")
	if id == "" || len(id) > 64 {
		return refuse("invalid_request", "This link is not valid. Go back to the service and start again.", errors.New("missing req"))
	}
	data, err := h.deps.Pending.TakeChallenge(r.Context(), prefix+id, h.now())
	if errors.Is(err, store.ErrNotFound) {
		return refuse("expired_request", "This sign-in request has expired or was already used. Go back to the service and start again.", err)
	}
	if err != nil {
		return unavailable(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return unavailable(fmt.Errorf("decode parked request: %w", err))
	}
	return nil
}

func (h *Handler) handleSSOContinue(w http.ResponseWriter, r *http.Request) {
	var pr pendingRequest
	if rf := h.unpark(r, pendingAuthnPrefix, &pr); rf != nil {
		h.refuseRequest(w, r, rf, "")
		return
	}
	h.proceed(w, r, &pr)
}

// handleIdPInitiated signs the user in to an SP without an AuthnRequest,
// posting an unsolicited response to the SP's default ACS.
func (h *Handler) handleIdPInitiated(w http.ResponseWriter, r *http.Request) {
	entityID := r.URL.Query().Get("sp")
	sp, err := h.deps.Store.GetServiceProviderByEntityID(r.Context(), entityID)
	if errors.Is(err, store.ErrNotFound) || entityID == "" {
		rf := refuse("unknown_sp", "This service is not registered with NHS identity.", err)
		rf.EntityID = entityID
		h.refuseRequest(w, r, rf, "")
		return
	}
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	acs, err := defaultACS(sp)
	if err != nil {
		rf := refuse("bad_acs", "This service has no address to sign you in at.", err)
		rf.EntityID = entityID
		h.refuseRequest(w, r, rf, "")
		return
	}
	h.proceed(w, r, &pendingRequest{SPID: sp.ID, EntityID: sp.EntityID, ACS: acs})
}

// minAAL is what the SP and the request require.
func minAAL(sp ServiceProvider, pr *pendingRequest) int {
	return max(authn.AAL2, sp.Settings.MinAAL, pr.MinAAL)
}

// proceed answers a validated request: at once with a usable session of
// enough assurance, else through a sign-in flow.
func (h *Handler) proceed(w http.ResponseWriter, r *http.Request, pr *pendingRequest) {
	ctx := r.Context()
	sp, err := h.deps.Store.GetServiceProvider(ctx, pr.SPID)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	need := minAAL(sp, pr)
	now := h.now()
	sess, err := h.deps.Authn.CurrentSession(r)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	if sess != nil && h.deps.Authn.Usable(sess, now) && sess.AAL >= need && !pr.ForceAuthn {
		if err := h.deps.Authn.TouchSession(ctx, sess); err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
		h.issue(w, r, sp, pr, sess, sess.SelectedRoleID, nil)
		return
	}
	if pr.IsPassive {
		h.sendStatus(w, r, sp, pr, "urn:oasis:names:tc:SAML:2.0:status:NoPassive")
		return
	}
	data, err := json.Marshal(pr)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	loginURL, err := h.deps.Authn.StartFlow(w, r, authn.Flow{
		Kind: "saml", ClientID: sp.EntityID, Request: string(data),
		RequestedAt: now.UTC().Truncate(time.Second), MinAAL: need, ForceLogin: pr.ForceAuthn, ResumeURL: PathResume,
	})
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	noStore(w)
	http.Redirect(w, r, loginURL, http.StatusFound)
}

// handleResume finishes a sign-in flow started by proceed.
func (h *Handler) handleResume(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	flow, err := h.deps.Authn.LoadFlow(r, r.URL.Query().Get("flow"))
	if err != nil {
		h.refuseRequest(w, r, refuse("invalid_flow", "This sign-in is not valid in this browser or has timed out. Go back to the service and start again.", err), "")
		return
	}
	if flow.Kind != "saml" {
		h.refuseRequest(w, r, refuse("invalid_flow", "This sign-in is not a SAML request.", nil), "")
		return
	}
	sess, err := h.deps.Authn.CurrentSession(r)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	if sess == nil || flow.SessionSID == "" || sess.SID != flow.SessionSID || !h.deps.Authn.Usable(sess, h.now()) {
		h.refuseRequest(w, r, refuse("invalid_flow", "The sign-in did not complete. Go back to the service and start again.", nil), "")
		return
	}
	var pr pendingRequest
	if err := json.Unmarshal([]byte(flow.Request), &pr); err != nil {
		h.refuseRequest(w, r, refuse("invalid_flow", "The sign-in request is damaged.", err), "")
		return
	}
	sp, err := h.deps.Store.GetServiceProvider(ctx, pr.SPID)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	if sp.EntityID != flow.ClientID {
		h.refuseRequest(w, r, refuse("invalid_flow", "The sign-in belongs to another service.", nil), sess.PersonUID)
		return
	}
	if sess.AAL < max(minAAL(sp, &pr), flow.MinAAL) {
		h.refuseRequest(w, r, refuse("insufficient_aal", "This service needs a higher-assurance sign-in (a security key or smartcard).", nil), sess.PersonUID)
		return
	}
	if flow.ForceLogin && sess.AuthTime.UTC().Truncate(time.Second).Before(flow.RequestedAt) {
		h.refuseRequest(w, r, refuse("login_required", "This service needs you to sign in again.", nil), sess.PersonUID)
		return
	}
	role := flow.SelectedRoleID
	if role == "" {
		role = sess.SelectedRoleID
	}
	h.issue(w, r, sp, &pr, sess, role, flow)
}

// chooseRole applies the SP's role rules to the person's active
// positions: the selected role when it is one of them, else the only
// one when the SP selects roles. AllowedRoles must be met by the selected
// role (or, without selection, by any active position).
func chooseRole(sp ServiceProvider, positions []policy.Position, selected string) (*policy.Position, error) {
	var role *policy.Position
	if sp.Settings.SelectRole {
		for i := range positions {
			if positions[i].RoleID == selected {
				role = &positions[i]
			}
		}
		if role == nil && len(positions) == 1 {
			role = &positions[0]
		}
	}
	if len(sp.Settings.AllowedRoles) == 0 {
		return role, nil
	}
	allowed := func(p policy.Position) bool {
		return slices.Contains(sp.Settings.AllowedRoles, p.RoleCode) || slices.Contains(sp.Settings.AllowedRoles, policy.JobRoleCode(p.RoleCode))
	}
	if role != nil {
		if allowed(*role) {
			return role, nil
		}
		return nil, errors.New("selected role is not allowed for this service")
	}
	if slices.ContainsFunc(positions, allowed) {
		return nil, nil
	}
	return nil, errors.New("no role allowed for this service")
}

// PathSelectRole is authn's role selection page.
const PathSelectRole = "/select-role"

// needsRoleChoice reports whether the user must choose a role for sp:
// the SP selects roles, the person holds several and none of them is
// selected yet.
func needsRoleChoice(sp ServiceProvider, positions []policy.Position, selected string) bool {
	if !sp.Settings.SelectRole || len(positions) < 2 {
		return false
	}
	return !slices.ContainsFunc(positions, func(p policy.Position) bool { return p.RoleID == selected })
}

// chooseRoleFirst sends the browser to authn's role selection page for
// flow, starting a flow already authenticated by sess when there is none.
func (h *Handler) chooseRoleFirst(w http.ResponseWriter, r *http.Request, sp ServiceProvider, pr *pendingRequest, sess *authn.Session, flow *authn.Flow) {
	id := ""
	if flow != nil {
		id = flow.ID
	} else {
		data, err := json.Marshal(pr)
		if err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
		loginURL, err := h.deps.Authn.StartFlow(w, r, authn.Flow{
			Kind: "saml", ClientID: sp.EntityID, Request: string(data), RequestedAt: h.now().UTC().Truncate(time.Second),
			MinAAL: minAAL(sp, pr), ResumeURL: PathResume, SessionSID: sess.SID, AuthenticatedAt: sess.AuthTime,
		})
		if err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
		u, err := url.Parse(loginURL)
		if err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
		id = u.Query().Get("flow")
	}
	noStore(w)
	http.Redirect(w, r, PathSelectRole+"?flow="+url.QueryEscape(id), http.StatusFound)
}

// issue sends a signed assertion for sess to the SP's ACS, after role
// selection when the SP needs it. flow is the finished sign-in, if any.
func (h *Handler) issue(w http.ResponseWriter, r *http.Request, sp ServiceProvider, pr *pendingRequest, sess *authn.Session, selected string, flow *authn.Flow) {
	ctx := r.Context()
	person, err := h.deps.People.GetPerson(ctx, sess.PersonUID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && person.Status == policy.StatusClosed) {
		rf := &refusal{Status: http.StatusForbidden, Heading: "Your account is not available", Message: "Contact your registration authority.",
			Reason: "account_unavailable", EntityID: sp.EntityID, Err: err}
		h.refuseRequest(w, r, rf, sess.PersonUID)
		return
	}
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	var positions []policy.Position
	roleName := func(string) string { return "" }
	if h.deps.Roles != nil {
		if positions, err = h.deps.Roles.ActivePositions(ctx, person.UID); err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
		if len(positions) > 0 {
			_, idx, err := h.deps.Roles.Catalogue(ctx)
			if err != nil {
				h.refuseRequest(w, r, unavailable(err), "")
				return
			}
			roleName = func(code string) string { return idx.Roles[code].Name }
		}
	}
	if needsRoleChoice(sp, positions, selected) {
		h.chooseRoleFirst(w, r, sp, pr, sess, flow)
		return
	}
	if flow != nil {
		if err := h.deps.Authn.FinishFlow(ctx, flow.ID); err != nil {
			h.refuseRequest(w, r, unavailable(err), "")
			return
		}
	}
	role, err := chooseRole(sp, positions, selected)
	if err != nil {
		rf := &refusal{Status: http.StatusForbidden, Heading: "You cannot use this service",
			Message: "None of your roles gives access to this service. Contact your registration authority if you need access.",
			Reason:  "role_not_allowed", EntityID: sp.EntityID, Err: err}
		h.refuseRequest(w, r, rf, person.UID)
		return
	}
	resp, err := h.buildResponse(r, sp, pr, sess, person, positions, role, roleName)
	if err != nil {
		h.refuseRequest(w, r, unavailable(fmt.Errorf("build response: %w", err)), person.UID)
		return
	}
	if err := h.deps.Store.AddParticipant(ctx, Participant{SID: sess.SID, EntityID: sp.EntityID, NameID: person.UID,
		SessionIndex: sess.SID, CreatedAt: h.now()}); err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	ev := audit.Event{Type: audit.SAMLAssertionIssued, Outcome: audit.Success, Subject: person.UID, Client: clip(sp.EntityID, 500),
		SessionHash: audit.HashSession(sess.SID), Detail: map[string]any{"aal": sess.AAL, "acs": clip(pr.ACS, 400), "idp_initiated": pr.RequestID == ""}}
	if role != nil {
		ev.RoleID, ev.Org = role.RoleID, role.OrgCode
	}
	if err := h.deps.Audit.Record(ctx, ev); err != nil {
		h.refuseRequest(w, r, unavailable(fmt.Errorf("audit: %w", err)), "")
		return
	}
	h.log.InfoContext(ctx, "saml assertion issued", "sp", sp.EntityID, "aal", sess.AAL)
	h.postForm(w, r, pr.ACS, "SAMLResponse", resp, pr.RelayState)
}

// postForm renders the HTTP-POST binding page. Its auto-submit script is
// a static file: the page has no inline script.
func (h *Handler) postForm(w http.ResponseWriter, r *http.Request, action, field string, xmlDoc []byte, relay string) {
	if checkEndpointURL(action) != nil || !strings.HasPrefix(action, "http") {
		h.refuseRequest(w, r, refuse("bad_acs", "The address to return you to is not valid.", fmt.Errorf("action %q", action)), "")
		return
	}
	noStore(w)
	data := pageData{Title: "Continuing to the service", Action: action, Field: field,
		Value: base64.StdEncoding.EncodeToString(xmlDoc), RelayState: relay}
	if err := renderPage(w, http.StatusOK, "saml_post", data); err != nil {
		h.log.Log(r.Context(), apierror.FailureLevel(r), "render saml post page", "err", err)
	}
}

// sendStatus sends a non-success Response (e.g. NoPassive) to the ACS.
func (h *Handler) sendStatus(w http.ResponseWriter, r *http.Request, sp ServiceProvider, pr *pendingRequest, status string) {
	resp, err := h.buildStatusResponse(sp, pr, status)
	if err != nil {
		h.refuseRequest(w, r, unavailable(err), "")
		return
	}
	h.postForm(w, r, pr.ACS, "SAMLResponse", resp, pr.RelayState)
}
