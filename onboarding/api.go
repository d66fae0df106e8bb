package onboarding

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

const maxBody = 256 << 10

// AdminAPI serves /admin/v1/onboarding/… on the admin listener for the
// operator (the admin bearer token).
type AdminAPI struct {
	Service *Service
	// OperatorToken is the admin bootstrap token.
	OperatorToken string
}

// Mount registers the admin routes.
func (a *AdminAPI) Mount(mux *http.ServeMux) {
	const p = "/admin/v1/onboarding"
	mux.Handle("POST "+p+"/test-accounts", a.auth(a.createTestAccount))
	mux.Handle("PUT "+p+"/reviewers/{uid}", a.auth(a.setReviewer))
	mux.Handle("GET "+p+"/applications", a.auth(a.list))
	mux.Handle("POST "+p+"/applications", a.auth(a.submit))
	mux.Handle("GET "+p+"/applications/{id}", a.auth(a.get))
	mux.Handle("POST "+p+"/applications/{id}/questions", a.auth(a.ask))
	mux.Handle("POST "+p+"/applications/{id}/sign-offs", a.auth(a.signOff))
	mux.Handle("POST "+p+"/applications/{id}/decision", a.auth(a.decide))
}

type apiHandler func(w http.ResponseWriter, r *http.Request, who Actor) error

func (a *AdminAPI) auth(h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		want := sha256.Sum256([]byte(a.OperatorToken))
		got := sha256.Sum256([]byte(tok))
		if !ok || a.OperatorToken == "" || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="nhsid-admin"`)
			writeErr(w, r, a.Service, apierror.New(http.StatusUnauthorized, "unauthorized", "A valid bearer token is required.", nil))
			return
		}
		if err := h(w, r, Actor{ID: "operator:bootstrap"}); err != nil {
			writeErr(w, r, a.Service, err)
		}
	})
}

// writeErr maps service errors to the API's JSON errors.
func writeErr(w http.ResponseWriter, r *http.Request, s *Service, err error) {
	var ae *apierror.Error
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, policy.ErrInvalid):
		err = apierror.New(http.StatusBadRequest, "invalid_request", err.Error(), err)
	case errors.Is(err, store.ErrNotFound):
		err = apierror.New(http.StatusNotFound, "not_found", "Not found.", err)
	case errors.Is(err, store.ErrExists):
		err = apierror.New(http.StatusConflict, "already_exists", "That already exists.", err)
	}
	apierror.Write(w, r, s.Log, err)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The body is not valid JSON for this request.", err)
	}
	return nil
}

func reply(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// View is an application as reviewers and integrators see it: with its
// eligibility checks and the sign-offs still missing.
type View struct {
	Application
	Eligibility     []Check  `json:"eligibility"`
	RequiredSignOff []string `json:"required_sign_offs"`
	MissingSignOff  []string `json:"missing_sign_offs"`
}

// ViewOf builds a View.
func ViewOf(a Application) View {
	return View{Application: a, Eligibility: a.Eligibility(), RequiredSignOff: a.RequiredSignOffs(a.Scopes),
		MissingSignOff: a.MissingSignOffs(a.Scopes)}
}

func views(as []Application) []View {
	out := make([]View, 0, len(as))
	for _, a := range as {
		out = append(out, ViewOf(a))
	}
	return out
}

func (a *AdminAPI) createTestAccount(w http.ResponseWriter, r *http.Request, who Actor) error {
	var in TestAccountInput
	if err := decode(r, &in); err != nil {
		return err
	}
	p, pos, err := a.Service.CreateTestAccount(r.Context(), who, in)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, map[string]any{"uid": p.UID, "test_account": true, "person_roleid": pos.RoleID, "role_code": pos.RoleCode, "org_code": pos.OrgCode})
}

func (a *AdminAPI) setReviewer(w http.ResponseWriter, r *http.Request, who Actor) error {
	var in struct {
		Reviewer bool `json:"reviewer"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	p, err := a.Service.SetReviewer(r.Context(), who, r.PathValue("uid"), in.Reviewer)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, p)
}

// list serves the review queue, or every application with ?all=1.
func (a *AdminAPI) list(w http.ResponseWriter, r *http.Request, _ Actor) error {
	var as []Application
	var err error
	if r.URL.Query().Get("all") == "1" {
		as, err = a.Service.Store.ListApplications(r.Context(), Filter{IntegratorUID: r.URL.Query().Get("integrator")})
	} else {
		as, err = a.Service.Queue(r.Context())
	}
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"items": views(as)})
}

func (a *AdminAPI) submit(w http.ResponseWriter, r *http.Request, who Actor) error {
	var in struct {
		IntegratorUID string `json:"integrator_uid"`
		Input
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	out, err := a.Service.Submit(r.Context(), who, in.IntegratorUID, in.Input)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, out)
}

func (a *AdminAPI) get(w http.ResponseWriter, r *http.Request, _ Actor) error {
	app, err := a.Service.Get(r.Context(), r.PathValue("id"), "")
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, ViewOf(app))
}

func (a *AdminAPI) ask(w http.ResponseWriter, r *http.Request, who Actor) error {
	var in struct {
		Text string `json:"text"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	app, err := a.Service.Ask(r.Context(), who, r.PathValue("id"), in.Text)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, ViewOf(app))
}

func (a *AdminAPI) signOff(w http.ResponseWriter, r *http.Request, who Actor) error {
	var in struct {
		Item string `json:"item"`
		Note string `json:"note"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	app, err := a.Service.SignOff(r.Context(), who, r.PathValue("id"), in.Item, in.Note)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, ViewOf(app))
}

func (a *AdminAPI) decide(w http.ResponseWriter, r *http.Request, who Actor) error {
	var in DecisionInput
	if err := decode(r, &in); err != nil {
		return err
	}
	out, err := a.Service.Decide(r.Context(), who, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, out)
}
