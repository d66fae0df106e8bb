package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// mountRA registers the RBAC and Registration Authority endpoints: the
// role catalogue, positions, identity verification, account closure and
// credential revocation. Every call goes through policy.Service with the
// caller as a policy.Actor, so the RA rules apply in one place.
func (a *API) mountRA(mux *http.ServeMux) {
	mux.Handle("POST /admin/v1/roles", a.auth(a.importRoles))
	mux.Handle("GET /admin/v1/roles", a.auth(a.getRoles))
	mux.Handle("POST /admin/v1/people/{uid}/positions", a.auth(a.assignPosition))
	mux.Handle("GET /admin/v1/people/{uid}/positions", a.auth(a.listPositions))
	mux.Handle("DELETE /admin/v1/positions/{id}", a.auth(a.endPosition))
	mux.Handle("POST /admin/v1/positions/{id}/approve", a.auth(a.approvePosition))
	mux.Handle("POST /admin/v1/people/{uid}/verification", a.auth(a.recordVerification))
	mux.Handle("POST /admin/v1/people/{uid}/close", a.auth(a.closePerson))
	mux.Handle("DELETE /admin/v1/people/{uid}/credentials/{credential_id}", a.auth(a.revokeCredential))
}

// policyActor is the caller as policy sees it.
func (w actor) policyActor() policy.Actor {
	if w.Operator {
		return policy.OperatorActor(w.ID)
	}
	return policy.PersonActor(w.ID)
}

// raErr maps policy refusals and conflicts to API errors.
func raErr(err error) error {
	var fe *policy.ForbiddenError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return apierror.New(http.StatusForbidden, "forbidden", fe.Reason, err)
	case errors.Is(err, store.ErrConflict):
		return apierror.New(http.StatusConflict, "conflict", "The record changed at the same time. Try again.", err)
	case errors.Is(err, policy.ErrUnsupported):
		return apierror.New(http.StatusNotImplemented, "not_supported", "This store does not keep roles.", err)
	}
	return err
}

func (a *API) importRoles(w http.ResponseWriter, r *http.Request, who actor) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, policy.MaxCatalogueBytes+1))
	if err != nil {
		return apierror.New(http.StatusBadRequest, "invalid_request", "The body could not be read.", err)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	csvFormat := mt == "text/csv"
	c, err := a.Policy.ImportCatalogue(r.Context(), who.policyActor(), body, csvFormat)
	if err != nil {
		return raErr(err)
	}
	counts := map[string]int{"job_roles": len(c.JobRoles), "activities": len(c.Activities), "workgroups": len(c.Workgroups), "areas_of_work": len(c.AreasOfWork)}
	if err := a.auditChange(r.Context(), who, "role_catalogue", "import", "", "", nil, counts); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, counts)
}

func (a *API) getRoles(w http.ResponseWriter, r *http.Request, _ actor) error {
	c, _, err := a.Policy.Catalogue(r.Context())
	if err != nil {
		return raErr(err)
	}
	if c.JobRoles == nil {
		c.JobRoles = []policy.JobRole{}
	}
	if c.Activities == nil {
		c.Activities = []policy.Activity{}
	}
	return reply(w, http.StatusOK, c)
}

// positionIn is the body of POST /admin/v1/people/{uid}/positions.
type positionIn struct {
	OrgCode         string   `json:"org_code"`
	RoleCode        string   `json:"role_code"`
	ActivityCodes   []string `json:"activity_codes"`
	WorkgroupCodes  []string `json:"workgroup_codes"`
	AreaOfWorkCodes []string `json:"aow_codes"`
	Start           string   `json:"start"`
	End             string   `json:"end"`
}

func (a *API) assignPosition(w http.ResponseWriter, r *http.Request, who actor) error {
	var in positionIn
	if err := decode(r, &in); err != nil {
		return err
	}
	start, err := policy.ParseDate(in.Start, false)
	if err != nil {
		return err
	}
	end, err := policy.ParseDate(in.End, true)
	if err != nil {
		return err
	}
	p, err := a.Policy.AssignPosition(r.Context(), who.policyActor(), r.PathValue("uid"), policy.PositionInput{
		OrgCode: in.OrgCode, RoleCode: in.RoleCode, ActivityCodes: in.ActivityCodes,
		WorkgroupCodes: in.WorkgroupCodes, AreaOfWorkCodes: in.AreaOfWorkCodes, StartsAt: start, EndsAt: end,
	})
	if err != nil {
		return raErr(err)
	}
	if err := a.auditChange(r.Context(), who, "position", p.RoleID, p.PersonUID, p.OrgCode, nil, p); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, positionOut(p))
}

// positionView is a position as the API shows it: zero times left out.
type positionView struct {
	policy.Position
	EndsAt     *time.Time `json:"end,omitempty"`
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func positionOut(p policy.Position) positionView {
	if p.ActivityCodes == nil {
		p.ActivityCodes = []string{}
	}
	return positionView{Position: p, EndsAt: optTime(p.EndsAt), ApprovedAt: optTime(p.ApprovedAt), EndedAt: optTime(p.EndedAt)}
}

func (a *API) listPositions(w http.ResponseWriter, r *http.Request, who actor) error {
	ps, err := a.Policy.ListPositionsAs(r.Context(), who.policyActor(), r.PathValue("uid"))
	if err != nil {
		return raErr(err)
	}
	out := list[positionView]{Items: []positionView{}}
	for _, p := range ps {
		out.Items = append(out.Items, positionOut(p))
	}
	return reply(w, http.StatusOK, out)
}

func (a *API) endPosition(w http.ResponseWriter, r *http.Request, who actor) error {
	p, err := a.Policy.EndPosition(r.Context(), who.policyActor(), r.PathValue("id"))
	if err != nil {
		return raErr(err)
	}
	if err := a.auditChange(r.Context(), who, "position", p.RoleID, p.PersonUID, p.OrgCode, nil, map[string]any{"ended_at": p.EndedAt}); err != nil {
		return err
	}
	return reply(w, http.StatusOK, positionOut(p))
}

func (a *API) approvePosition(w http.ResponseWriter, r *http.Request, who actor) error {
	p, err := a.Policy.ApprovePosition(r.Context(), who.policyActor(), r.PathValue("id"))
	if err != nil {
		return raErr(err)
	}
	if err := a.auditChange(r.Context(), who, "position", p.RoleID, p.PersonUID, p.OrgCode, nil, map[string]any{"approved_by": p.ApprovedBy}); err != nil {
		return err
	}
	return reply(w, http.StatusOK, positionOut(p))
}

func (a *API) recordVerification(w http.ResponseWriter, r *http.Request, who actor) error {
	var in struct {
		Evidence   []string `json:"evidence"`
		VerifiedOn string   `json:"verified_on"`
		Level      int      `json:"level"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	on, err := policy.ParseDate(in.VerifiedOn, false)
	if err != nil {
		return err
	}
	v, p, err := a.Policy.RecordVerification(r.Context(), who.policyActor(), r.PathValue("uid"),
		policy.Verification{Evidence: in.Evidence, VerifiedOn: on, Level: in.Level})
	if err != nil {
		return raErr(err)
	}
	if err := a.auditChange(r.Context(), who, "identity_verification", p.UID, p.UID, "", nil, v); err != nil {
		return err
	}
	return reply(w, http.StatusCreated, map[string]any{"verification": v, "person": p})
}

func (a *API) closePerson(w http.ResponseWriter, r *http.Request, who actor) error {
	p, err := a.Policy.ClosePerson(r.Context(), who.policyActor(), r.PathValue("uid"))
	if err != nil {
		return raErr(err)
	}
	if err := a.auditChange(r.Context(), who, "person", p.UID, p.UID, "", nil, map[string]any{"status": p.Status}); err != nil {
		return err
	}
	return reply(w, http.StatusOK, p)
}

// credentialRevoker is the part of authn's store that revocation needs;
// both store adapters provide it alongside policy.Store.
type credentialRevoker interface {
	GetCredential(ctx context.Context, id []byte) (authn.Credential, error)
	UpdateCredential(ctx context.Context, id []byte, fn func(*authn.Credential) error) (authn.Credential, error)
}

func (a *API) revokeCredential(w http.ResponseWriter, r *http.Request, who actor) error {
	ctx := r.Context()
	uid := r.PathValue("uid")
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("credential_id"))
	if err != nil || len(id) == 0 || len(id) > 1024 {
		return apierror.New(http.StatusBadRequest, "invalid_request", "credential_id must be the base64url credential id.", err)
	}
	cs, ok := a.Policy.Store.(credentialRevoker)
	if !ok {
		return raErr(policy.ErrUnsupported)
	}
	if err := a.Policy.CheckPerson(ctx, who.policyActor(), policy.ActRevokeCredential, uid); err != nil {
		return raErr(err)
	}
	c, err := cs.GetCredential(ctx, id)
	if err != nil {
		return err
	}
	if c.PersonUID != uid {
		return apierror.New(http.StatusNotFound, "not_found", "Not found.", nil)
	}
	now := time.Now().UTC()
	if a.Policy.Now != nil {
		now = a.Policy.Now().UTC()
	}
	c, err = cs.UpdateCredential(ctx, id, func(x *authn.Credential) error {
		if x.RevokedAt.IsZero() {
			x.RevokedAt = now
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := a.auditChange(ctx, who, "credential", base64.RawURLEncoding.EncodeToString(c.ID), uid, "", nil, map[string]any{"revoked_at": c.RevokedAt}); err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"credential_id": base64.RawURLEncoding.EncodeToString(c.ID),
		"uid": c.PersonUID, "revoked_at": c.RevokedAt})
}
