package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
)

// Unlocker ends a person's sign-in lockout (ratelimit.Limiter).
type Unlocker interface {
	Unlock(ctx context.Context, personUID string) error
	Locked(ctx context.Context, personUID string) (bool, time.Time, error)
}

// mountUnlock registers the RA unlock endpoints:
//
//	GET  /admin/v1/people/{uid}/lockout  → {"locked":bool,"locked_until":time|null}
//	POST /admin/v1/people/{uid}/unlock   → {"locked":false}
//
// Both need policy.ActUnlock over the person (RA Agents, Managers and
// Unlockers of the person's organisations, or an operator).
func (a *API) mountUnlock(mux *http.ServeMux) {
	mux.Handle("GET /admin/v1/people/{uid}/lockout", a.auth(a.getLockout))
	mux.Handle("POST /admin/v1/people/{uid}/unlock", a.auth(a.unlockPerson))
}

func (a *API) lockouts() (Unlocker, error) {
	if a.Lockouts == nil {
		return nil, apierror.New(http.StatusNotFound, "not_found", "Lockouts are not kept by this server.", nil)
	}
	return a.Lockouts, nil
}

func (a *API) getLockout(w http.ResponseWriter, r *http.Request, who actor) error {
	l, err := a.lockouts()
	if err != nil {
		return err
	}
	uid := r.PathValue("uid")
	if err := a.Policy.CheckPerson(r.Context(), who.policyActor(), policy.ActUnlock, uid); err != nil {
		return raErr(err)
	}
	locked, until, err := l.Locked(r.Context(), uid)
	if err != nil {
		return err
	}
	out := map[string]any{"locked": locked, "locked_until": nil}
	if locked {
		out["locked_until"] = until.UTC()
	}
	return reply(w, http.StatusOK, out)
}

func (a *API) unlockPerson(w http.ResponseWriter, r *http.Request, who actor) error {
	l, err := a.lockouts()
	if err != nil {
		return err
	}
	ctx := r.Context()
	uid := r.PathValue("uid")
	if err := a.Policy.CheckPerson(ctx, who.policyActor(), policy.ActUnlock, uid); err != nil {
		return raErr(err)
	}
	locked, until, err := l.Locked(ctx, uid)
	if err != nil {
		return err
	}
	if err := l.Unlock(ctx, uid); err != nil {
		return err
	}
	before := map[string]any{"locked": locked}
	if locked {
		before["locked_until"] = until.UTC().Format(time.RFC3339)
	}
	if err := audit.OrNop(a.Audit).Record(ctx, audit.Event{
		Type: audit.Unlock, Outcome: audit.Success, Actor: who.ID, Subject: uid,
		Detail: map[string]any{"before": before},
	}); err != nil {
		return err
	}
	return reply(w, http.StatusOK, map[string]any{"locked": false})
}
