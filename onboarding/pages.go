package onboarding

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/web"
)

// Pages serves the integrator's /onboarding pages and JSON API, and the
// reviewers' /onboarding/review console, on the public listener. Both
// need a signed-in session at AAL2 or above: /onboarding an integrator's,
// /onboarding/review a person flagged Reviewer. Forms carry a
// double-submit CSRF token; the JSON API needs a JSON content type.
type Pages struct {
	Service       *Service
	Sessions      *authn.Service
	SecureCookies bool
}

// Mount registers the public routes.
func (p *Pages) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /onboarding", p.home)
	mux.HandleFunc("GET /onboarding/signin", p.signin)
	mux.HandleFunc("POST /onboarding/signup", p.signup)
	mux.HandleFunc("GET /onboarding/verify", p.verify)
	mux.HandleFunc("POST /onboarding/apply", p.applyForm)
	mux.HandleFunc("POST /onboarding/answer", p.answerForm)
	mux.HandleFunc("GET /onboarding/api/applications", p.apiList)
	mux.HandleFunc("POST /onboarding/api/applications", p.apiSubmit)
	mux.HandleFunc("POST /onboarding/api/applications/{id}/answers", p.apiAnswer)
	mux.HandleFunc("POST /onboarding/api/applications/{id}/changes", p.apiChange)
	mux.HandleFunc("GET /onboarding/review", p.review)
	mux.HandleFunc("POST /onboarding/review/{id}", p.reviewAction)
}

const csrfCookie = "nhsid_onboarding_csrf"

func (p *Pages) csrf(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/onboarding", HttpOnly: true, Secure: p.SecureCookies, SameSite: http.SameSiteStrictMode})
	return v
}

func checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	f := r.PostFormValue("csrf")
	return err == nil && f != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(f)) == 1
}

// person returns the signed-in person at AAL2+, or nil.
func (p *Pages) person(r *http.Request) (*policy.Person, *authn.Session, error) {
	sess, err := p.Sessions.CurrentSession(r)
	if err != nil {
		return nil, nil, err
	}
	if sess == nil || !p.Sessions.Usable(sess, p.Service.now()) || sess.AAL < authn.AAL2 {
		return nil, nil, nil
	}
	if id := r.URL.Query().Get("flow"); id != "" {
		if f, err := p.Sessions.LoadFlow(r, id); err == nil && f.Kind == "onboarding" {
			_ = p.Sessions.FinishFlow(r.Context(), f.ID)
		}
	}
	per, err := p.Service.Policy.Store.GetPerson(r.Context(), sess.PersonUID)
	if err != nil {
		return nil, nil, err
	}
	if per.Status != policy.StatusActive {
		return nil, nil, nil
	}
	return &per, sess, nil
}

func (p *Pages) startSignin(w http.ResponseWriter, r *http.Request, resume string) {
	u, err := p.Sessions.StartFlow(w, r, authn.Flow{Kind: "onboarding", RequestedAt: p.Service.now().Truncate(time.Second),
		MinAAL: authn.AAL2, ResumeURL: resume})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func (p *Pages) signin(w http.ResponseWriter, r *http.Request) { p.startSignin(w, r, "/onboarding") }

type pageData struct {
	Title        string
	CSRF         string
	Person       *policy.Person
	Applications []View
	Notice       string
	Error        string
	Secret       string
	Scopes       []string
}

func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	w.Header().Set("Cache-Control", "no-store")
	d.Scopes = KnownScopes
	if err := web.Render(w, status, name, d); err != nil {
		p.Service.Log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
	}
}

func (p *Pages) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		if errors.Is(err, policy.ErrInvalid) {
			ae = apierror.New(http.StatusBadRequest, "invalid_request", err.Error(), err)
		} else {
			p.Service.Log.ErrorContext(r.Context(), "onboarding page failed", "err", err)
			ae = apierror.New(http.StatusServiceUnavailable, "unavailable", "Sorry, there is a problem with the service. Try again later.", err)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	_ = web.Render(w, ae.Status, "error", map[string]any{"Title": "There is a problem", "Heading": "There is a problem", "Message": ae.Message})
}

func (p *Pages) home(w http.ResponseWriter, r *http.Request) {
	per, _, err := p.person(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.renderHome(w, r, per, http.StatusOK, pageData{Notice: r.URL.Query().Get("notice")})
}

func (p *Pages) renderHome(w http.ResponseWriter, r *http.Request, per *policy.Person, status int, d pageData) {
	d.Title, d.CSRF, d.Person = "Onboard a relying party", p.csrf(w, r), per
	if per != nil && per.Integrator {
		as, err := p.Service.Mine(r.Context(), per.UID)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		d.Applications = views(as)
	}
	p.render(w, r, status, "onboarding", d)
}

func (p *Pages) signup(w http.ResponseWriter, r *http.Request) {
	if !checkCSRF(r) {
		p.fail(w, r, apierror.New(http.StatusForbidden, "csrf", "The form has expired. Go back and try again.", nil))
		return
	}
	err := p.Service.StartSignup(r.Context(), SignupInput{Email: r.PostFormValue("email"), GivenName: r.PostFormValue("given_name"),
		FamilyName: r.PostFormValue("family_name"), Organisation: r.PostFormValue("organisation")})
	if errors.Is(err, policy.ErrInvalid) {
		p.renderHome(w, r, nil, http.StatusBadRequest, pageData{Error: err.Error()})
		return
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/onboarding?notice="+url.QueryEscape("Check your email for a link to confirm your address."), http.StatusSeeOther)
}

func (p *Pages) verify(w http.ResponseWriter, r *http.Request) {
	_, code, _, err := p.Service.CompleteSignup(r.Context(), r.URL.Query().Get("token"))
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/enrol?invite="+url.QueryEscape(code), http.StatusSeeOther)
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (p *Pages) applyForm(w http.ResponseWriter, r *http.Request) {
	per, _, err := p.person(r)
	if err != nil || per == nil || !checkCSRF(r) {
		p.fail(w, r, errOr(err, apierror.New(http.StatusForbidden, "forbidden", "Sign in again and retry.", nil)))
		return
	}
	aal, _ := strconv.Atoi(r.PostFormValue("required_aal"))
	in := Input{
		Organisation: r.PostFormValue("organisation"), Product: r.PostFormValue("product"),
		Commissioner: r.PostFormValue("commissioner"), CommissioningEvidence: r.PostFormValue("commissioning_evidence"),
		CommissioningReference: r.PostFormValue("commissioning_reference"), HostingLocation: r.PostFormValue("hosting_location"),
		ServesEngland: r.PostFormValue("serves_england") == "yes", UserGroups: lines(r.PostFormValue("user_groups")),
		Scopes: r.PostForm["scope"], RequiredAAL: aal, RedirectURIs: lines(r.PostFormValue("redirect_uris")),
		JWKSURI: r.PostFormValue("jwks_uri"), BackchannelLogoutURI: r.PostFormValue("backchannel_logout_uri"),
		SAMLMetadata: r.PostFormValue("saml_metadata"),
		Contacts:     []Contact{{Name: strings.TrimSpace(r.PostFormValue("contact_name")), Email: strings.TrimSpace(r.PostFormValue("contact_email"))}},
	}
	out, err := p.Service.Submit(r.Context(), Actor{ID: "person:" + per.UID, UID: per.UID}, per.UID, in)
	var ae *apierror.Error
	if errors.Is(err, policy.ErrInvalid) || errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		p.renderHome(w, r, per, http.StatusBadRequest, pageData{Error: err.Error()})
		return
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.renderHome(w, r, per, http.StatusOK, pageData{Notice: "Application submitted. Your sandbox client is " + out.SandboxClient.ID + ".", Secret: out.ClientSecret})
}

func errOr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

func (p *Pages) answerForm(w http.ResponseWriter, r *http.Request) {
	per, _, err := p.person(r)
	if err != nil || per == nil || !checkCSRF(r) {
		p.fail(w, r, errOr(err, apierror.New(http.StatusForbidden, "forbidden", "Sign in again and retry.", nil)))
		return
	}
	if _, err := p.Service.Answer(r.Context(), Actor{ID: "person:" + per.UID, UID: per.UID}, per.UID,
		r.PostFormValue("application"), r.PostFormValue("question"), r.PostFormValue("answer")); err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/onboarding?notice="+url.QueryEscape("Answer sent."), http.StatusSeeOther)
}

// apiIntegrator authenticates a JSON API call from a signed-in integrator.
func (p *Pages) apiIntegrator(w http.ResponseWriter, r *http.Request, write bool) (*policy.Person, bool) {
	if write && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeErr(w, r, p.Service, apierror.New(http.StatusUnsupportedMediaType, "invalid_request", "Send JSON.", nil))
		return nil, false
	}
	per, _, err := p.person(r)
	if err != nil {
		writeErr(w, r, p.Service, err)
		return nil, false
	}
	if per == nil || !per.Integrator {
		writeErr(w, r, p.Service, apierror.New(http.StatusUnauthorized, "login_required", "Sign in with an integrator account.", nil))
		return nil, false
	}
	return per, true
}

func (p *Pages) apiList(w http.ResponseWriter, r *http.Request) {
	per, ok := p.apiIntegrator(w, r, false)
	if !ok {
		return
	}
	as, err := p.Service.Mine(r.Context(), per.UID)
	if err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	_ = reply(w, http.StatusOK, map[string]any{"items": views(as)})
}

func (p *Pages) apiSubmit(w http.ResponseWriter, r *http.Request) {
	per, ok := p.apiIntegrator(w, r, true)
	if !ok {
		return
	}
	var in Input
	if err := decode(r, &in); err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	out, err := p.Service.Submit(r.Context(), Actor{ID: "person:" + per.UID, UID: per.UID}, per.UID, in)
	if err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	_ = reply(w, http.StatusCreated, out)
}

func (p *Pages) apiAnswer(w http.ResponseWriter, r *http.Request) {
	per, ok := p.apiIntegrator(w, r, true)
	if !ok {
		return
	}
	var in struct {
		QuestionID string `json:"question_id"`
		Text       string `json:"text"`
	}
	if err := decode(r, &in); err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	a, err := p.Service.Answer(r.Context(), Actor{ID: "person:" + per.UID, UID: per.UID}, per.UID, r.PathValue("id"), in.QuestionID, in.Text)
	if err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	_ = reply(w, http.StatusOK, ViewOf(a))
}

func (p *Pages) apiChange(w http.ResponseWriter, r *http.Request) {
	per, ok := p.apiIntegrator(w, r, true)
	if !ok {
		return
	}
	var in Input
	if err := decode(r, &in); err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	a, err := p.Service.RequestChange(r.Context(), Actor{ID: "person:" + per.UID, UID: per.UID}, per.UID, r.PathValue("id"), in)
	if err != nil {
		writeErr(w, r, p.Service, err)
		return
	}
	_ = reply(w, http.StatusCreated, ViewOf(a))
}

// reviewer returns the signed-in reviewer, or starts a sign-in / refuses.
func (p *Pages) reviewer(w http.ResponseWriter, r *http.Request) *policy.Person {
	per, _, err := p.person(r)
	if err != nil {
		p.fail(w, r, err)
		return nil
	}
	if per == nil {
		if r.Method == http.MethodGet {
			p.startSignin(w, r, "/onboarding/review")
		} else {
			p.fail(w, r, apierror.New(http.StatusForbidden, "forbidden", "Sign in again and retry.", nil))
		}
		return nil
	}
	if !per.Reviewer || per.Integrator || per.TestAccount {
		p.fail(w, r, apierror.New(http.StatusForbidden, "forbidden", "Only onboarding reviewers can see this page.", nil))
		return nil
	}
	return per
}

func (p *Pages) review(w http.ResponseWriter, r *http.Request) {
	per := p.reviewer(w, r)
	if per == nil {
		return
	}
	p.renderReview(w, r, per, http.StatusOK, r.URL.Query().Get("notice"), "")
}

func (p *Pages) renderReview(w http.ResponseWriter, r *http.Request, per *policy.Person, status int, notice, errMsg string) {
	as, err := p.Service.Queue(r.Context())
	if err != nil {
		p.fail(w, r, err)
		return
	}
	p.render(w, r, status, "onboarding_review", pageData{Title: "Onboarding review queue", CSRF: p.csrf(w, r), Person: per,
		Applications: views(as), Notice: notice, Error: errMsg})
}

func (p *Pages) reviewAction(w http.ResponseWriter, r *http.Request) {
	per := p.reviewer(w, r)
	if per == nil {
		return
	}
	if !checkCSRF(r) {
		p.fail(w, r, apierror.New(http.StatusForbidden, "csrf", "The form has expired. Go back and try again.", nil))
		return
	}
	who := Actor{ID: "person:" + per.UID, UID: per.UID}
	id := r.PathValue("id")
	var err error
	var notice string
	switch r.PostFormValue("action") {
	case "ask":
		_, err = p.Service.Ask(r.Context(), who, id, r.PostFormValue("text"))
		notice = "Question sent to the integrator."
	case "sign-off":
		_, err = p.Service.SignOff(r.Context(), who, id, r.PostFormValue("item"), r.PostFormValue("note"))
		notice = "Signed off."
	case "decide":
		_, err = p.Service.Decide(r.Context(), who, id, DecisionInput{Outcome: r.PostFormValue("outcome"), Reasons: r.PostFormValue("reasons")})
		notice = "Decision recorded."
	default:
		err = apierror.New(http.StatusBadRequest, "invalid_request", "Unknown action.", nil)
	}
	var ae *apierror.Error
	if errors.Is(err, policy.ErrInvalid) || errors.As(err, &ae) && ae.Status < 500 {
		p.renderReview(w, r, per, http.StatusBadRequest, "", err.Error())
		return
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/onboarding/review?notice="+url.QueryEscape(notice), http.StatusSeeOther)
}
