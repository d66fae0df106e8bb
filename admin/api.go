package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// InviteIssuer issues enrolment invites (authn.Service).
type InviteIssuer interface {
	IssueInvite(ctx context.Context, personUID, createdBy string) (code, url string, expiresAt time.Time, err error)
}

// ClientRegistrar registers and changes relying parties (idp.Provider).
type ClientRegistrar interface {
	RegisterClientBy(ctx context.Context, actor string, c *idp.Client) (secret string, err error)
	UpdateClient(ctx context.Context, actor, id string, patch map[string]json.RawMessage) (c *idp.Client, secret string, err error)
	RotateClientSecret(ctx context.Context, actor, id string) (secret string, err error)
	EndSecretOverlap(ctx context.Context, actor, id string) (had bool, err error)
}

// API is the admin REST API.
type API struct {
	Policy  *policy.Service
	Invites InviteIssuer
	Clients ClientRegistrar
	// ClientStore reads registered clients.
	ClientStore idp.ClientStore
	// BootstrapToken, when set, is accepted as an operator credential.
	BootstrapToken string
	Log            *slog.Logger
	// Audit records every change; nil records nothing.
	Audit audit.Recorder
	// AuditStore serves GET /admin/v1/audit; nil answers 404.
	AuditStore audit.Store
	// SAMLProviders is the SAML SP registry; nil answers 404.
	SAMLProviders saml.Store
	// Sessions ends a person's sessions (sessions.go); nil answers 404.
	Sessions SessionEnder
	// Lockouts unlocks people locked out after failed sign-ins
	// (unlock.go); nil answers 404.
	Lockouts Unlocker
}

const maxBody = 1 << 20

// Mount registers the API's routes on mux.
func (a *API) Mount(mux *http.ServeMux) {
	mux.Handle("POST /admin/v1/organisations", a.auth(a.createOrganisation))
	mux.Handle("GET /admin/v1/organisations", a.auth(a.listOrganisations))
	mux.Handle("GET /admin/v1/organisations/{code}", a.auth(a.getOrganisation))
	mux.Handle("POST /admin/v1/people", a.auth(a.createPerson))
	mux.Handle("GET /admin/v1/people", a.auth(a.listPeople))
	mux.Handle("GET /admin/v1/people/{uid}", a.auth(a.getPerson))
	mux.Handle("POST /admin/v1/people/{uid}/invites", a.auth(a.createInvite))
	mux.Handle("POST /admin/v1/clients", a.auth(a.createClient))
	mux.Handle("GET /admin/v1/clients", a.auth(a.listClients))
	mux.Handle("GET /admin/v1/clients/{id}", a.auth(a.getClient))
	mux.Handle("PATCH /admin/v1/clients/{id}", a.auth(a.updateClient))
	mux.Handle("POST /admin/v1/clients/{id}/secret", a.auth(a.rotateClientSecret))
	mux.Handle("DELETE /admin/v1/clients/{id}/secret/previous", a.auth(a.endSecretOverlap))
	a.mountRA(mux)
	a.mountSAML(mux)
	a.mountSessions(mux)
	a.mountUnlock(mux)
	mux.Handle("GET /admin/v1/audit", a.auth(a.listAudit))
	mux.Handle("/admin/", a.auth(func(w http.ResponseWriter, r *http.Request, _ actor) error {
		return apierror.New(http.StatusNotFound, "not_found", "No such admin endpoint.", nil)
	}))
}

// actor is who is calling.
type actor struct {
	ID       string
	Operator bool
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, who actor) error

func (a *API) auth(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := a.authenticate(r)
		if err == nil {
			err = h(w, r, who)
		}
		if err != nil {
			if errors.Is(err, policy.ErrInvalid) {
				err = apierror.New(http.StatusBadRequest, "invalid_request", err.Error(), err)
			} else if errors.Is(err, store.ErrExists) {
				err = apierror.New(http.StatusConflict, "already_exists", "That already exists.", err)
			} else if errors.Is(err, store.ErrNotFound) {
				var ae *apierror.Error
				if !errors.As(err, &ae) {
					err = apierror.New(http.StatusNotFound, "not_found", "Not found.", err)
				}
			}
			if errors.Is(err, errUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="nhsid-admin"`)
			}
			apierror.Write(w, r, a.Log, err)
		}
	})
}

var errUnauthenticated = errors.New("unauthenticated")

func (a *API) authenticate(r *http.Request) (actor, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return actor{}, apierror.New(http.StatusUnauthorized, "unauthorized", "A bearer token is required.", errUnauthenticated)
	}
	if a.BootstrapToken != "" {
		want := sha256.Sum256([]byte(a.BootstrapToken))
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(want[:], got[:]) == 1 {
			return actor{ID: "operator:bootstrap", Operator: true}, nil
		}
	}
	return actor{}, apierror.New(http.StatusUnauthorized, "unauthorized", "The bearer token is not valid.", errUnauthenticated)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The body is not valid JSON for this endpoint: "+safeJSONError(err), err)
	}
	if dec.More() {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The body must be a single JSON object.", nil)
	}
	return nil
}

// safeJSONError describes a decoding error without echoing input.
func safeJSONError(err error) string {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		return fmt.Sprintf("field %q has the wrong type", ute.Field)
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return "malformed"
}

func reply(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// page reads ?cursor=&limit= (limit 1..200, default 50).
func page(r *http.Request) (string, int, error) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			return "", 0, apierror.New(http.StatusBadRequest, "invalid_request", "limit must be 1 to 200.", err)
		}
		limit = n
	}
	return r.URL.Query().Get("cursor"), limit, nil
}

type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (a *API) createOrganisation(w http.ResponseWriter, r *http.Request, who actor) error {
	var in struct {
		Code       string `json:"code"`
		Name       string `json:"name"`
		ParentCode string `json:"parent_code"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	o, err := a.Policy.CreateOrganisation(r.Context(), policy.Organisation{Code: in.Code, Name: in.Name, ParentCode: in.ParentCode})
	if err != nil {
		return err
	}
	if err := a.auditChange(r.Context(), who, "organisation", o.Code, "", o.Code, nil, o); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, o)
}

func (a *API) getOrganisation(w http.ResponseWriter, r *http.Request, _ actor) error {
	o, err := a.Policy.Store.GetOrganisation(r.Context(), r.PathValue("code"))
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, o)
}

func (a *API) listOrganisations(w http.ResponseWriter, r *http.Request, _ actor) error {
	cursor, limit, err := page(r)
	if err != nil {
		return err
	}
	items, err := a.Policy.Store.ListOrganisations(r.Context(), cursor, limit)
	if err != nil {
		return err
	}
	out := list[policy.Organisation]{Items: items}
	if len(items) == limit {
		out.NextCursor = items[len(items)-1].Code
	}
	return reply(w, http.StatusOK, out)
}

type personIn struct {
	Title            string            `json:"title"`
	GivenName        string            `json:"given_name"`
	MiddleNames      string            `json:"middle_names"`
	FamilyName       string            `json:"family_name"`
	DisplayName      string            `json:"display_name"`
	Email            string            `json:"email"`
	IDAssuranceLevel int               `json:"id_assurance_level"`
	Registrations    map[string]string `json:"registrations"`
}

func (a *API) createPerson(w http.ResponseWriter, r *http.Request, who actor) error {
	var in personIn
	if err := decode(r, &in); err != nil {
		return err
	}
	p, err := a.Policy.CreatePerson(r.Context(), policy.Person{
		Title: in.Title, GivenName: in.GivenName, MiddleNames: in.MiddleNames, FamilyName: in.FamilyName,
		DisplayName: in.DisplayName, Email: in.Email, IDAssuranceLevel: in.IDAssuranceLevel, Registrations: in.Registrations,
	})
	if err != nil {
		return err
	}
	if err := a.auditChange(r.Context(), who, "person", p.UID, p.UID, "", nil, p); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, p)
}

func (a *API) getPerson(w http.ResponseWriter, r *http.Request, _ actor) error {
	p, err := a.Policy.Store.GetPerson(r.Context(), r.PathValue("uid"))
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, p)
}

func (a *API) listPeople(w http.ResponseWriter, r *http.Request, _ actor) error {
	cursor, limit, err := page(r)
	if err != nil {
		return err
	}
	var items []policy.Person
	if q := r.URL.Query().Get("q"); q != "" {
		// The start of a family name, full name, display name or email
		// address (policy.Person.FoundBy).
		if len(q) > 100 {
			return apierror.New(http.StatusBadRequest, "invalid_request", "q must be at most 100 characters.", nil)
		}
		items, err = a.Policy.Store.SearchPeople(r.Context(), policy.SearchKey(q), cursor, limit)
	} else {
		items, err = a.Policy.Store.ListPeople(r.Context(), cursor, limit)
	}
	if err != nil {
		return err
	}
	out := list[policy.Person]{Items: append([]policy.Person{}, items...)}
	if len(items) == limit {
		out.NextCursor = items[len(items)-1].UID
	}
	return reply(w, http.StatusOK, out)
}

func (a *API) createInvite(w http.ResponseWriter, r *http.Request, who actor) error {
	uid := r.PathValue("uid")
	p, err := a.Policy.Store.GetPerson(r.Context(), uid)
	if err != nil {
		return err
	}
	if p.Status != policy.StatusActive {
		return apierror.New(http.StatusConflict, "person_closed", "This person's account is closed.", nil)
	}
	code, url, exp, err := a.Invites.IssueInvite(r.Context(), uid, who.ID)
	if err != nil {
		return err
	}
	if err := a.auditChange(r.Context(), who, "invite", uid, uid, "", nil, map[string]any{"expires_at": exp.UTC()}); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, map[string]any{"code": code, "url": url, "expires_at": exp.UTC()})
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request, who actor) error {
	var c idp.Client
	if err := decode(r, &c); err != nil {
		return err
	}
	secret, err := a.Clients.RegisterClientBy(r.Context(), who.ID, &c)
	if err != nil {
		return err
	}
	out := clientOut{Client: &c}
	if secret != "" {
		out.Secret = secret
	}
	return reply(w, http.StatusCreated, out)
}

type clientOut struct {
	*idp.Client
	Secret string `json:"client_secret,omitempty"`
}

// updateClient changes a client's metadata (fields given replace theirs;
// null resets one); a move to a secret-based method answers the new
// secret once.
func (a *API) updateClient(w http.ResponseWriter, r *http.Request, who actor) error {
	var patch map[string]json.RawMessage
	if err := decode(r, &patch); err != nil {
		return err
	}
	c, secret, err := a.Clients.UpdateClient(r.Context(), who.ID, r.PathValue("id"), patch)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, clientOut{Client: c, Secret: secret})
}

// rotateClientSecret issues a new secret, answered once; the previous one
// stays valid until DELETE …/secret/previous or the next rotation.
func (a *API) rotateClientSecret(w http.ResponseWriter, r *http.Request, who actor) error {
	id := r.PathValue("id")
	secret, err := a.Clients.RotateClientSecret(r.Context(), who.ID, id)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"client_id": id, "client_secret": secret, "previous_secret_valid": true})
}

// endSecretOverlap stops accepting the secret before the last rotation.
func (a *API) endSecretOverlap(w http.ResponseWriter, r *http.Request, who actor) error {
	had, err := a.Clients.EndSecretOverlap(r.Context(), who.ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !had {
		return apierror.New(http.StatusNotFound, "not_found", "The client has no previous secret.", nil)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request, _ actor) error {
	c, err := a.ClientStore.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, c)
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request, _ actor) error {
	cursor, limit, err := page(r)
	if err != nil {
		return err
	}
	items, err := a.ClientStore.ListClients(r.Context(), cursor, limit)
	if err != nil {
		return err
	}
	out := list[*idp.Client]{Items: items}
	if len(items) == limit {
		out.NextCursor = items[len(items)-1].ID
	}
	return reply(w, http.StatusOK, out)
}
