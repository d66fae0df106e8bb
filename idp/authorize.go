package idp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// errUnmetAuthentication is OpenID Connect's "unmet_authentication_requirements".
var errUnmetAuthentication = &fosite.RFC6749Error{
	ErrorField:       "unmet_authentication_requirements",
	DescriptionField: "The requested authentication context cannot be satisfied.",
	CodeField:        http.StatusBadRequest,
}

// acrRequest is what an authorize request asks of the sign-in.
type acrRequest struct {
	// Classes are the known requested classes, in request order.
	Classes []string
	// MinAAL is the assurance the session must have: the client's minimum
	// and the least of the requested classes, whichever is higher.
	MinAAL int
}

// parseACR reads acr_values and the claims parameter. Unknown classes are
// ignored unless requested as essential through claims, in which case at
// least one must be known.
func parseACR(form url.Values, clientAAL int) (acrRequest, error) {
	requested := strings.Fields(form.Get("acr_values"))
	if raw := form.Get("claims"); raw != "" {
		var cp struct {
			IDToken map[string]*struct {
				Essential bool     `json:"essential"`
				Value     string   `json:"value"`
				Values    []string `json:"values"`
			} `json:"id_token"`
		}
		if err := json.Unmarshal([]byte(raw), &cp); err != nil {
			return acrRequest{}, fosite.ErrInvalidRequest.WithHint("The 'claims' parameter is not valid JSON.")
		}
		if c := cp.IDToken["acr"]; c != nil && (c.Value != "" || len(c.Values) > 0) {
			vals := c.Values
			if c.Value != "" {
				vals = append([]string{c.Value}, vals...)
			}
			if c.Essential {
				requested = vals
				known := false
				for _, v := range vals {
					if _, ok := acrAAL(v); ok {
						known = true
					}
				}
				if !known {
					return acrRequest{}, errUnmetAuthentication
				}
			} else if len(requested) == 0 {
				requested = vals
			}
		}
	}
	out := acrRequest{}
	least := 0
	for _, v := range requested {
		aal, ok := acrAAL(v)
		if !ok {
			continue
		}
		out.Classes = append(out.Classes, v)
		if least == 0 || aal < least {
			least = aal
		}
	}
	out.MinAAL = max(clientAAL, least)
	return out, nil
}

// acrFor is the acr claim for a session at aal: the first requested class
// it satisfies, else AAL3_ANY or AAL2_ANY by the session's AAL.
func acrFor(req acrRequest, aal int) string {
	for _, c := range req.Classes {
		if need, _ := acrAAL(c); need <= aal {
			return c
		}
	}
	if aal >= 3 {
		return "AAL3_ANY"
	}
	return "AAL2_ANY"
}

// issWriter adds the RFC 9207 iss parameter to authorization error
// redirects written by fosite.
type issWriter struct {
	http.ResponseWriter
	iss string
}

func (w *issWriter) WriteHeader(code int) {
	if loc := w.Header().Get("Location"); loc != "" && code >= 300 && code < 400 {
		if u, err := url.Parse(loc); err == nil {
			q := u.Query()
			if q.Has("error") && !q.Has("iss") {
				q.Set("iss", w.iss)
				u.RawQuery = q.Encode()
				w.Header().Set("Location", u.String())
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (p *Provider) writeAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	if unavailable(err) {
		writeUnavailable(w)
		return
	}
	p.log.InfoContext(ctx, "authorize request rejected", "err", err)
	p.oauth.WriteAuthorizeError(ctx, &issWriter{ResponseWriter: w, iss: p.cfg.Issuer}, ar, err)
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	viaPAR := strings.HasPrefix(r.Form.Get("request_uri"), parURIPrefix)
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	ar.SetID(newRequestID())
	client, ok := ar.GetClient().(*Client)
	if !ok {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithDebug("unexpected client type"))
		return
	}
	// Request objects are not supported (discovery says so); fosite would
	// otherwise accept them.
	if r.Form.Has("request") {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrRequestNotSupported)
		return
	}
	if client.RequirePAR && !viaPAR {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("This client must use pushed authorization requests."))
		return
	}
	form := ar.GetRequestForm()
	acr, err := parseACR(form, client.RequiredAAL)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}

	now := p.now()
	requestedAt := now.UTC().Truncate(time.Second)
	prompt := fosite.Arguments(strings.Fields(form.Get("prompt")))
	maxAge, hasMaxAge := -1, form.Has("max_age")
	if hasMaxAge {
		maxAge, err = strconv.Atoi(form.Get("max_age"))
		if err != nil || maxAge < 0 {
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("The 'max_age' parameter must be a non-negative integer."))
			return
		}
	}

	sess, err := p.deps.Authn.CurrentSession(r)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	forceLogin := prompt.Has("login") || (hasMaxAge && maxAge == 0)
	usable := sess != nil && p.deps.Authn.Usable(sess, now) && sess.AAL >= acr.MinAAL && !forceLogin && !clientIdle(client, sess, now)
	if usable && hasMaxAge {
		authTime := sess.AuthTime.UTC().Truncate(time.Second)
		if authTime.Add(time.Duration(maxAge) * time.Second).Before(requestedAt) {
			usable = false
			forceLogin = true
		}
	}
	// preAuth is a usable session that still needs a role choice: the
	// flow below starts authenticated and goes to the selection page.
	var preAuth *authn.Session
	if usable {
		// Clock skew between replicas must not put auth_time after the
		// request (fosite then refuses prompt=none).
		if at := sess.AuthTime.UTC().Truncate(time.Second); at.After(requestedAt) {
			requestedAt = at
		}
		if err := p.deps.Authn.TouchSession(ctx, sess); err != nil {
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		out, err := p.decideRole(ctx, client, sess.PersonUID, ar.GetRequestedScopes(), "", sess.SelectedRoleID)
		if err != nil {
			p.writeAuthorizeError(ctx, w, ar, serverErr(err))
			return
		}
		if out.Denied {
			p.denyAccess(w, r, ar, client)
			return
		}
		if !out.NeedChoice {
			if err := p.auditRoleAuto(ctx, client, sess, out, "", sess.SelectedRoleID); err != nil {
				p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
				return
			}
			p.issue(w, r, ar, client, sess, acr, requestedAt, out.RoleID, "")
			return
		}
		preAuth = sess
	}
	if prompt.Has("none") && preAuth != nil {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrInteractionRequired.WithHint("The user must choose a role."))
		return
	}
	if prompt.Has("none") {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrLoginRequired.WithHint("No usable session and prompt=none."))
		return
	}

	stored := url.Values{}
	for k, v := range form {
		stored[k] = append([]string(nil), v...)
	}
	stored.Del("request_uri")
	if viaPAR {
		// Remember the PAR origin so resume does not repeat the per-client check.
		stored.Set("nhsid_par", "1")
	}
	newFlow := authn.Flow{
		Kind:        "oidc",
		ClientID:    client.ID,
		Request:     stored.Encode(),
		RequestedAt: requestedAt,
		MinAAL:      acr.MinAAL,
		ForceLogin:  forceLogin,
		LoginHint:   form.Get("login_hint"),
		ResumeURL:   PathResume,
	}
	if preAuth != nil {
		newFlow.SessionSID, newFlow.AuthenticatedAt = preAuth.SID, preAuth.AuthTime
	}
	loginURL, err := p.deps.Authn.StartFlow(w, r, newFlow)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	if preAuth != nil {
		lu, err := url.Parse(loginURL)
		if err != nil {
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		http.Redirect(w, r, selectRoleURL(lu.Query().Get("flow")), http.StatusFound)
		return
	}
	http.Redirect(w, r, loginURL, http.StatusFound)
}

func (p *Provider) handleResume(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.URL.Query().Get("flow")
	if result := r.URL.Query().Get("result"); result != "" {
		p.resumeCompleted(w, r, id, result)
		return
	}
	flow, err := p.deps.Authn.LoadFlow(r, id)
	if err != nil {
		apierror.Write(w, r, p.log, err)
		return
	}
	if flow.Kind != "oidc" {
		apierror.Write(w, r, p.log, apierror.New(http.StatusBadRequest, "invalid_flow", "This sign-in is not an OpenID Connect request.", nil))
		return
	}
	sess, err := p.deps.Authn.CurrentSession(r)
	if err != nil {
		apierror.Write(w, r, p.log, err)
		return
	}
	if sess == nil || flow.SessionSID == "" || sess.SID != flow.SessionSID || !p.deps.Authn.Usable(sess, p.now()) {
		apierror.Write(w, r, p.log, apierror.New(http.StatusBadRequest, "invalid_flow", "The sign-in did not complete. Start again from the application.", nil))
		return
	}
	rf, err := p.resolveFlow(ctx, r, flow, sess)
	if err != nil {
		if rf.ar == nil {
			apierror.Write(w, r, p.log, err)
		} else {
			p.writeAuthorizeError(ctx, w, rf.ar, err)
		}
		return
	}
	if rf.out.NeedChoice {
		http.Redirect(w, r, selectRoleURL(flow.ID), http.StatusFound)
		return
	}
	if rf.out.Denied {
		if err := p.deps.Authn.FinishFlow(ctx, flow.ID); err != nil {
			p.writeAuthorizeError(ctx, w, rf.ar, fosite.ErrServerError.WithWrap(err))
			return
		}
		p.denyAccess(w, r, rf.ar, rf.client)
		return
	}
	if err := p.auditRoleAuto(ctx, rf.client, sess, rf.out, flow.SelectedRoleID, rf.sessionRole); err != nil {
		p.writeAuthorizeError(ctx, w, rf.ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	p.issue(w, r, rf.ar, rf.client, sess, rf.acr, flow.RequestedAt, rf.out.RoleID, flow.ID)
}

// resolvedFlow is a signed-in flow's authorize request, read again and
// decided for the session.
type resolvedFlow struct {
	ar          fosite.AuthorizeRequester
	client      *Client
	acr         acrRequest
	out         policy.RoleChoice
	sessionRole string // the session's role, as far as this flow may reuse it
}

// resolveFlow reads the flow's stored authorize request again (through
// fosite, as if the browser had sent it now) and decides it for the
// session sess: the client, the assurance, a fresh sign-in where one was
// required, and the role. On error, rf.ar is nil when the error is for
// the browser (the flow is damaged) and set when it is for the client.
func (p *Provider) resolveFlow(ctx context.Context, r *http.Request, flow *authn.Flow, sess *authn.Session) (rf resolvedFlow, err error) {
	form, err := url.ParseQuery(flow.Request)
	if err != nil {
		return rf, apierror.New(http.StatusBadRequest, "invalid_flow", "The sign-in request is damaged.", err)
	}
	form.Del("nhsid_par")
	r2 := r.Clone(ctx)
	r2.Method = http.MethodGet
	r2.URL = &url.URL{Path: PathAuthorize, RawQuery: form.Encode()}
	r2.Form, r2.PostForm, r2.MultipartForm = nil, nil, nil
	r2.Body = http.NoBody
	r2.ContentLength = 0
	r2.Header.Del("Content-Type")
	rf.ar, err = p.oauth.NewAuthorizeRequest(ctx, r2)
	if err != nil {
		return rf, err
	}
	rf.ar.SetID(newRequestID())
	client, ok := rf.ar.GetClient().(*Client)
	if !ok || client.ID != flow.ClientID {
		return rf, fosite.ErrInvalidRequest.WithHint("The sign-in belongs to another client.")
	}
	rf.client = client
	if rf.acr, err = parseACR(rf.ar.GetRequestForm(), client.RequiredAAL); err != nil {
		return rf, err
	}
	if sess.AAL < max(rf.acr.MinAAL, flow.MinAAL) {
		return rf, errUnmetAuthentication
	}
	if flow.ForceLogin && sess.AuthTime.UTC().Truncate(time.Second).Before(flow.RequestedAt) {
		return rf, fosite.ErrLoginRequired.WithHint("A fresh sign-in was required.")
	}
	// prompt=login (a fresh sign-in) asks for the role again.
	rf.sessionRole = sess.SelectedRoleID
	if flow.ForceLogin {
		rf.sessionRole = ""
	}
	if rf.out, err = p.decideRole(ctx, client, sess.PersonUID, rf.ar.GetRequestedScopes(), flow.SelectedRoleID, rf.sessionRole); err != nil {
		return rf, serverErr(err)
	}
	return rf, nil
}

// issue completes an authorize request for an authenticated session; the
// sign-in flow it ends, if any (flowID), goes with the code it writes.
func (p *Provider) issue(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, client *Client, as *authn.Session, acr acrRequest, requestedAt time.Time, roleID, flowID string) {
	ctx := r.Context()
	person, err := p.deps.People.GetPerson(ctx, as.PersonUID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fosite.ErrAccessDenied.WithHint("The account is not available.").WithWrap(err)
		} else if !unavailable(err) {
			err = fosite.ErrServerError.WithWrap(err)
		}
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	sess, err := p.grant(ar, client, person, as, acr, requestedAt, roleID)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	firstUse, err := p.firstUse(ctx, ar, sess)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, serverErr(err))
		return
	}
	// The code's rows (code, PKCE, OIDC), its audit events, the session
	// participant and the end of the flow are written together: in one
	// write pipeline where the store offers it (one round trip and one
	// commit, shared with other requests'), else one by one as before.
	wctx, send, err := store.BeginWrites(ctx, p.deps.Store)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	resp, err := p.queueIssue(wctx, ar, sess, client.ID, flowID, firstUse)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	if err := send(wctx); err != nil {
		p.writeAuthorizeError(ctx, w, ar, serverErr(err))
		return
	}
	if firstUse {
		p.knownUse.add(sess.GetSubject(), client.ID)
	}
	p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// grant checks that person may have a grant for client and builds it: the
// scopes and audience granted, and the fosite session. Its errors are
// authorize errors for the client.
func (p *Provider) grant(ar fosite.AuthorizeRequester, client *Client, person policy.Person, as *authn.Session, acr acrRequest, requestedAt time.Time, roleID string) (*Session, error) {
	if person.Status == policy.StatusClosed {
		return nil, fosite.ErrAccessDenied.WithHint("The account is closed.")
	}
	if err := policy.CheckEnvironment(person, client.Environment); err != nil {
		return nil, fosite.ErrAccessDenied.WithHint("This account cannot sign in to this application's environment.").WithWrap(err)
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	for _, a := range ar.GetRequestedAudience() {
		ar.GrantAudience(a)
	}
	if len(ar.GetGrantedAudience()) == 0 {
		for _, a := range client.Audience {
			ar.GrantAudience(a)
		}
	}
	if len(ar.GetGrantedAudience()) == 0 && client.AccessTokenFormat == "jwt" {
		// RFC 9068 needs an audience: the resource nhsid itself serves.
		ar.GrantAudience(p.url(PathUserinfo))
	}
	if !ar.GetGrantedScopes().Has("selectedrole") {
		roleID = ""
	}
	return p.grantSession(client, person, as, acrFor(acr, as.AAL), requestedAt, roleID), nil
}

// queueIssue writes, through wctx's write pipeline where it has one, what
// an authorization code needs: the end of the flow (flowID, if any), the
// code's rows, its audit events and the session participant. It returns
// the response to write once they are sent; its errors are authorize
// errors for the client.
func (p *Provider) queueIssue(wctx context.Context, ar fosite.AuthorizeRequester, sess *Session, clientID, flowID string, firstUse bool) (fosite.AuthorizeResponder, error) {
	if flowID != "" {
		if err := p.deps.Authn.FinishFlow(wctx, flowID); err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
	}
	resp, err := p.oauth.NewAuthorizeResponse(wctx, ar, sess)
	if err != nil {
		return nil, err // nothing was sent, so nothing was written
	}
	resp.AddParameter("iss", p.cfg.Issuer)
	if firstUse {
		if err := p.auditFirstUse(wctx, ar, sess); err != nil {
			return nil, fosite.ErrServerError.WithWrap(err)
		}
	}
	if err := p.auditCode(wctx, ar, sess); err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	if err := p.recordParticipant(wctx, sess.SID, clientID); err != nil {
		return nil, serverErr(err)
	}
	return resp, nil
}

// grantSession builds the fosite session for a grant.
func (p *Provider) grantSession(client *Client, person policy.Person, as *authn.Session, acr string, requestedAt time.Time, roleID string) *Session {
	sess := NewSession()
	sess.Subject = person.UID
	sess.SID = as.SID
	sess.AAL = as.AAL
	sess.AMR = append([]string(nil), as.AMR...)
	sess.SelectedRoleID = roleID
	sess.ClientID = client.ID

	authTime := as.AuthTime.UTC().Truncate(time.Second)
	c := sess.IDTokenClaims()
	c.Subject = person.UID
	c.AuthTime = authTime
	c.RequestedAt = requestedAt.UTC()
	c.AuthenticationContextClassReference = acr
	c.AuthenticationMethodsReferences = append([]string(nil), as.AMR...)
	c.Extra["sid"] = as.SID
	c.Extra["azp"] = client.ID
	c.Extra["nhsid_useruid"] = person.UID
	c.Extra["id_assurance_level"] = strconv.Itoa(person.IDAssuranceLevel)
	c.Extra["authentication_assurance_level"] = strconv.Itoa(as.AAL)
	if roleID != "" {
		c.Extra["selected_roleid"] = roleID
	}
	if client.Environment == "sandbox" {
		c.Extra["nhsid_environment"] = "sandbox"
	}
	alg := client.IDTokenSignedResponseAlg
	if alg == "" {
		alg = p.cfg.KeyAlg
	}
	sess.IDTokenHeaders().Add(algHeader, alg)

	sess.JWTClaims.Subject = person.UID
	sess.JWTClaims.Extra["client_id"] = client.ID
	sess.JWTClaims.Extra["auth_time"] = authTime.Unix()
	sess.JWTClaims.Extra["acr"] = acr
	sess.JWTClaims.Extra["sid"] = as.SID
	return sess
}
