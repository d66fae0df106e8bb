package admin

import (
	"context"
	"net/http"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
)

// SessionEnder ends a person's SSO sessions everywhere (authn.Service:
// tokens revoked, relying parties told by back-channel logout and SAML SLO).
type SessionEnder interface {
	EndPersonSessions(ctx context.Context, uid, reason string) (int, error)
}

// mountSessions registers session control: DELETE ends every session of a
// person (an RA Agent or Manager for the person's organisations, or an
// operator).
func (a *API) mountSessions(mux *http.ServeMux) {
	mux.Handle("DELETE /admin/v1/people/{uid}/sessions", a.auth(a.endSessions))
}

func (a *API) endSessions(w http.ResponseWriter, r *http.Request, who actor) error {
	if a.Sessions == nil {
		return apierror.New(http.StatusNotFound, "not_found", "No such admin endpoint.", nil)
	}
	ctx := r.Context()
	uid := r.PathValue("uid")
	if err := a.Policy.CheckPerson(ctx, who.policyActor(), policy.ActEndSessions, uid); err != nil {
		return raErr(err)
	}
	if _, err := a.Policy.Store.GetPerson(ctx, uid); err != nil {
		return err
	}
	n, err := a.Sessions.EndPersonSessions(ctx, uid, authn.EndRAAction)
	if err != nil {
		return err
	}
	if err := a.auditChange(ctx, who, "sessions", uid, uid, "", nil, map[string]any{"ended": n}); err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"uid": uid, "sessions_ended": n})
}
