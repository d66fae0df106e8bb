package console

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// Search bounds: the console pages through the people the store finds
// (policy.Store.SearchPeople), checks a page at a time whether the RA may
// view them (policy.Service.CheckPeopleWith: one query per page), stops
// after maxScan found, and shows at most maxResults.
const (
	maxScan    = 5000
	scanPage   = 500
	maxResults = 25
)

// doneMessages are the fixed success messages a redirect may name.
var doneMessages = map[string]string{
	"created":          "The person was created. Record their identity check, assign a position and issue an invite.",
	"verified":         "The identity check was recorded.",
	"assigned":         "The position was assigned.",
	"assigned_pending": "The position was assigned. It waits for a second RA Manager to approve it (two-person rule).",
	"approved":         "The position was approved and is in force.",
	"ended":            "The position was ended.",
	"revoked":          "The security key was revoked. Issue an invite so that they can enrol a replacement.",
	"closed":           "The account was closed: every position ended and their sessions were signed out.",
	"unlocked":         "The lockout was ended: they can sign in again now.",
}

// evidenceOptions are the evidence types policy accepts, with labels.
var evidenceOptions = []option{
	{"passport", "Passport"}, {"driving_licence", "Photocard driving licence"},
	{"national_id_card", "National identity card"}, {"biometric_residence_permit", "Biometric residence permit"},
	{"birth_certificate", "Birth certificate"}, {"marriage_certificate", "Marriage certificate"},
	{"utility_bill", "Utility bill"}, {"bank_statement", "Bank statement"},
	{"council_tax_bill", "Council tax bill"}, {"payslip", "Payslip"}, {"p60", "P60"},
	{"employer_id", "Employer ID badge"},
}

// fieldLabels turn policy's "field: problem" messages into page text.
var fieldLabels = map[string]string{
	"org_code": "Organisation", "role_code": "Role", "activity_codes": "Activities", "workgroup_codes": "Workgroups",
	"aow_codes": "Areas of work", "end": "End date", "dates": "Dates", "evidence": "Evidence", "level": "Level",
	"verified_on": "Date of the check", "given_name": "Given name", "family_name": "Family name",
	"email": "Email address", "names and email": "Names and email", "uid": "Account",
	"person_roleid": "Position", "id_assurance_level": "Identity assurance level",
}

type option struct{ Value, Label string }

// problems turns a service error into page messages and a status; ok is
// false for an unexpected failure.
func problems(err error) (status int, msgs []string, ok bool) {
	var fe *policy.ForbiddenError
	var ie *policy.InvalidError
	switch {
	case errors.As(err, &fe):
		return http.StatusForbidden, []string{fe.Reason}, true
	case errors.As(err, &ie):
		for _, p := range ie.Problems {
			if f, rest, found := strings.Cut(p, ": "); found && fieldLabels[f] != "" {
				p = fieldLabels[f] + ": " + rest
			}
			msgs = append(msgs, p)
		}
		return http.StatusBadRequest, msgs, true
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, []string{"That record was not found."}, true
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, []string{"The record changed at the same time. Try again."}, true
	case errors.Is(err, store.ErrExists):
		return http.StatusConflict, []string{"That already exists."}, true
	}
	return 0, nil, false
}

// personRow is one search result.
type personRow struct {
	UID, Name, Email, Status string
}

func rowOf(p policy.Person) personRow {
	return personRow{UID: p.UID, Name: p.DisplayName, Email: p.Email, Status: p.Status}
}

// handleHome shows the search form and, with ?q=, the people found.
func (c *Console) handleHome(w http.ResponseWriter, r *http.Request) {
	who := c.enter(w, r)
	if who == nil {
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 100 {
		q = q[:100]
	}
	data := map[string]any{"Title": "Registration Authority console", "Query": q, "Scope": c.scope(r.Context(), who),
		"CanCreate": who.auth.Check(policy.ActCreatePerson, "", "", "") == nil}
	if q != "" {
		found, more, err := c.search(r.Context(), who, q)
		if err != nil {
			c.unavailable(w, r, err)
			return
		}
		data["Searched"] = true
		data["Results"] = found
		data["More"] = more
	}
	c.render(w, r, http.StatusOK, "ra_home", data)
}

// scope describes where the RA holds which RA levels.
func (c *Console) scope(ctx context.Context, who *ra) []string {
	var out []string
	for _, code := range who.auth.Orgs() {
		levels := who.auth.Levels(code)
		var ls []string
		for l := range levels {
			ls = append(ls, strings.ReplaceAll(l, "_", " "))
		}
		slices.Sort(ls)
		name := code
		if o, err := c.Policy.Store.GetOrganisation(ctx, code); err == nil {
			name = o.Name + " (" + code + ")"
		}
		out = append(out, name+": "+strings.Join(ls, ", "))
	}
	slices.Sort(out)
	return out
}

// search finds the people the RA may view by their 12-digit UID, or by
// the start of a name or email address (policy.Person.FoundBy).
func (c *Console) search(ctx context.Context, who *ra, q string) ([]personRow, bool, error) {
	visible := func(p policy.Person) (bool, error) {
		err := c.Policy.CheckPersonWith(ctx, who.auth, policy.ActViewPerson, p.UID)
		if errors.Is(err, policy.ErrForbidden) {
			return false, nil
		}
		return err == nil, err
	}
	if len(q) == 12 && strings.Trim(q, "0123456789") == "" {
		p, err := c.Policy.Store.GetPerson(ctx, q)
		if errors.Is(err, store.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("search: %w", err)
		}
		ok, err := visible(p)
		if err != nil || !ok {
			return nil, false, err
		}
		return []personRow{rowOf(p)}, false, nil
	}
	key := policy.SearchKey(q)
	var out []personRow
	after, scanned := "", 0
	for scanned < maxScan {
		ps, err := c.Policy.Store.SearchPeople(ctx, key, after, scanPage)
		if err != nil {
			return nil, false, fmt.Errorf("search: %w", err)
		}
		// One look-up of the page's positions, not one per person.
		uids := make([]string, len(ps))
		for i, p := range ps {
			uids[i] = p.UID
		}
		checks, err := c.Policy.CheckPeopleWith(ctx, who.auth, policy.ActViewPerson, uids)
		if err != nil {
			return nil, false, fmt.Errorf("search: %w", err)
		}
		for _, p := range ps {
			scanned++
			err := checks[p.UID]
			if err != nil && !errors.Is(err, policy.ErrForbidden) {
				return nil, false, err
			}
			if err == nil {
				if len(out) == maxResults {
					return out, true, nil
				}
				out = append(out, rowOf(p))
			}
		}
		if len(ps) < scanPage {
			return out, false, nil
		}
		after = ps[len(ps)-1].UID
	}
	return out, true, nil
}

// creatableOrgs are the organisations the RA may create people for.
func (c *Console) orgOptions(ctx context.Context, who *ra, ok func(code string) bool) ([]option, error) {
	orgs, err := c.Policy.Store.ListOrganisations(ctx, "", 0)
	if err != nil {
		return nil, fmt.Errorf("organisations: %w", err)
	}
	var out []option
	for _, o := range orgs {
		if len(who.auth.Levels(o.Code)) > 0 && ok(o.Code) {
			out = append(out, option{o.Code, o.Name + " (" + o.Code + ")"})
		}
	}
	return out, nil
}

// handleNewPerson shows the create-person form.
func (c *Console) handleNewPerson(w http.ResponseWriter, r *http.Request) {
	who := c.enter(w, r)
	if who == nil {
		return
	}
	c.renderNewPerson(w, r, who, http.StatusOK, nil, map[string]string{})
}

func (c *Console) renderNewPerson(w http.ResponseWriter, r *http.Request, who *ra, status int, errs []string, form map[string]string) {
	orgs, err := c.orgOptions(r.Context(), who, func(code string) bool {
		return who.auth.Check(policy.ActCreatePerson, code, "", "") == nil
	})
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	c.render(w, r, status, "ra_new_person", map[string]any{
		"Title": "Create a person", "CSRF": who.csrf, "Orgs": orgs, "Errors": errs, "Form": form,
	})
}

// handleCreatePerson creates a person for one of the RA's organisations.
func (c *Console) handleCreatePerson(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	form := map[string]string{}
	for _, k := range []string{"title", "given_name", "family_name", "email", "org_code"} {
		form[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	if form["org_code"] == "" {
		c.renderNewPerson(w, r, who, http.StatusBadRequest, []string{"Organisation: choose the organisation you are acting for"}, form)
		return
	}
	p, err := c.Policy.CreatePersonAs(r.Context(), who.actor, form["org_code"], policy.Person{
		Title: form["title"], GivenName: form["given_name"], FamilyName: form["family_name"], Email: form["email"],
	})
	if err != nil {
		status, msgs, ok := problems(err)
		if !ok {
			c.unavailable(w, r, err)
			return
		}
		c.renderNewPerson(w, r, who, status, msgs, form)
		return
	}
	if err := c.record(r.Context(), who, "person", p.UID, p.UID, strings.ToUpper(form["org_code"]),
		map[string]any{"uid": p.UID, "display_name": p.DisplayName, "status": p.Status}); err != nil {
		c.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, personURL(p.UID, "created"), http.StatusSeeOther)
}

// positionRow is one position on the person page.
type positionRow struct {
	RoleID, RoleCode, RoleName, OrgCode, OrgName, Activities, Start, End, Status string
	CanEnd, CanApprove                                                           bool
}

// credentialRow is one security key on the person page.
type credentialRow struct {
	ID, Name, Created, LastUsed string
	AAL                         int
	Revoked                     bool
}

func day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 January 2006")
}

// handlePerson shows a person with every action the RA may take.
func (c *Console) handlePerson(w http.ResponseWriter, r *http.Request) {
	who := c.enter(w, r)
	if who == nil {
		return
	}
	notice := doneMessages[r.URL.Query().Get("done")]
	c.renderPerson(w, r, who, r.PathValue("uid"), http.StatusOK, nil, notice, map[string]string{})
}

// renderPerson renders the person page; a person the RA may not view is a
// 403 page, an unknown one a 404.
func (c *Console) renderPerson(w http.ResponseWriter, r *http.Request, who *ra, uid string, status int, errs []string, notice string, form map[string]string) {
	ctx := r.Context()
	p, err := c.Policy.Store.GetPerson(ctx, uid)
	if errors.Is(err, store.ErrNotFound) {
		c.errorPage(w, r, http.StatusNotFound, "Person not found", "No person has that user ID. Search again from the Registration Authority console.")
		return
	}
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	positions, err := c.Policy.ListPositionsAs(ctx, who.actor, uid)
	var fe *policy.ForbiddenError
	if errors.As(err, &fe) {
		c.errorPage(w, r, http.StatusForbidden, "You cannot manage this person", fe.Reason)
		return
	}
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	_, idx, err := c.Policy.Catalogue(ctx)
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	creds, err := c.Credentials.ListCredentials(ctx, uid)
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	now := c.now()
	// can mirrors policy's person check for showing forms; the actions
	// themselves are checked again by policy on submit.
	can := func(act policy.Action) bool {
		live := 0
		for _, x := range positions {
			if x.EndedAt.IsZero() {
				live++
				if who.auth.Check(act, x.OrgCode, "", uid) == nil {
					return true
				}
			}
		}
		return live == 0 && who.auth.Check(act, "", "", uid) == nil
	}
	var rows []positionRow
	for _, x := range positions {
		role := idx.Roles[x.RoleCode]
		row := positionRow{RoleID: x.RoleID, RoleCode: x.RoleCode, RoleName: role.Name, OrgCode: x.OrgCode, OrgName: x.OrgName,
			Activities: strings.Join(x.ActivityCodes, ", "), Start: day(x.StartsAt), End: day(x.EndsAt)}
		switch {
		case !x.EndedAt.IsZero():
			row.Status = "Ended " + day(x.EndedAt)
		case x.PendingApproval:
			row.Status = "Awaiting approval"
		case now.Before(x.StartsAt):
			row.Status = "Starts later"
		case !x.EndsAt.IsZero() && !now.Before(x.EndsAt):
			row.Status = "Expired"
		default:
			row.Status = "Active"
		}
		row.CanEnd = x.EndedAt.IsZero() && who.auth.Check(policy.ActEndPosition, x.OrgCode, x.RoleCode, uid) == nil
		// The two-person rule: a second RA Manager approves, never the one who asked.
		row.CanApprove = x.PendingApproval && x.EndedAt.IsZero() && x.CreatedBy != who.actor.Name() &&
			who.auth.Check(policy.ActApprovePosition, x.OrgCode, x.RoleCode, uid) == nil
		rows = append(rows, row)
	}
	var crows []credentialRow
	for _, cr := range creds {
		crows = append(crows, credentialRow{ID: base64.RawURLEncoding.EncodeToString(cr.ID), Name: cr.Name, AAL: cr.AAL,
			Created: day(cr.CreatedAt), LastUsed: day(cr.LastUsedAt), Revoked: !cr.RevokedAt.IsZero()})
	}
	// Organisations and roles the RA may assign to this person.
	var roles []option
	var assignOrgs []option
	if p.Status == policy.StatusActive {
		codes := make([]string, 0, len(idx.Roles))
		for code := range idx.Roles {
			codes = append(codes, code)
		}
		slices.Sort(codes)
		orgOK := map[string]bool{}
		assignOrgs, err = c.orgOptions(ctx, who, func(org string) bool {
			for _, code := range codes {
				if who.auth.Check(policy.ActAssignPosition, org, code, uid) == nil {
					orgOK[org] = true
					return true
				}
			}
			return false
		})
		if err != nil {
			c.unavailable(w, r, err)
			return
		}
		for _, code := range codes {
			for org := range orgOK {
				if who.auth.Check(policy.ActAssignPosition, org, code, uid) == nil {
					jr := idx.Roles[code]
					roles = append(roles, option{code, jr.Name + " (" + policy.JobRoleCode(code) + ")"})
					break
				}
			}
		}
	}
	activities := make([]option, 0, len(idx.Activities))
	for code, a := range idx.Activities {
		activities = append(activities, option{code, a.Name})
	}
	slices.SortFunc(activities, func(a, b option) int { return strings.Compare(a.Value, b.Value) })
	var lastCheck string
	if rs, ok := c.rbac(); ok {
		if vs, err := rs.ListVerifications(ctx, uid); err == nil && len(vs) > 0 {
			v := vs[len(vs)-1]
			lastCheck = fmt.Sprintf("%s by %s (evidence: %s)", day(v.VerifiedOn), v.VerifiedBy, strings.Join(v.Evidence, ", "))
		}
	}
	var signIns []signInRow
	if c.Risk != nil {
		decisions, err := c.Risk.RecentRiskDecisions(ctx, uid)
		if err != nil {
			c.unavailable(w, r, err)
			return
		}
		signIns = signInRows(decisions)
	}
	var lockedUntil string
	canUnlock := c.Lockouts != nil && can(policy.ActUnlock)
	if canUnlock {
		locked, until, err := c.Lockouts.Locked(ctx, uid)
		if err != nil {
			c.unavailable(w, r, err)
			return
		}
		if locked {
			lockedUntil = until.UTC().Format("2 Jan 2006 15:04 UTC")
		}
	}
	active := p.Status == policy.StatusActive
	c.render(w, r, status, "ra_person", map[string]any{
		"CanUnlock": canUnlock, "LockedUntil": lockedUntil,
		"SignIns": signIns,
		"Title":   p.DisplayName, "CSRF": who.csrf, "Person": p, "Positions": rows, "Credentials": crows,
		"Errors": errs, "Notice": notice, "Form": form, "LastCheck": lastCheck,
		"Roles": roles, "AssignOrgs": assignOrgs, "Activities": activities, "Evidence": evidenceOptions,
		"Today":     now.UTC().Format("2006-01-02"),
		"CanVerify": active && can(policy.ActVerifyIdentity), "CanInvite": active && can(policy.ActIssueInvite),
		"CanRevoke": can(policy.ActRevokeCredential), "CanClose": active && can(policy.ActCloseAccount),
		"CanAssign": active && len(roles) > 0, "Closed": !active,
	})
}

func (c *Console) rbac() (policy.RBACStore, bool) {
	if c.Policy.RBAC != nil {
		return c.Policy.RBAC, true
	}
	rs, ok := c.Policy.Store.(policy.RBACStore)
	return rs, ok
}

// fail re-renders the person page with err, or a 503 for an unexpected
// failure.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, who *ra, uid string, err error, form map[string]string) {
	status, msgs, ok := problems(err)
	if !ok {
		c.unavailable(w, r, err)
		return
	}
	c.renderPerson(w, r, who, uid, status, msgs, "", form)
}

// handleVerify records an identity check.
func (c *Console) handleVerify(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	uid := r.PathValue("uid")
	form := map[string]string{"verified_on": strings.TrimSpace(r.PostFormValue("verified_on"))}
	on, err := policy.ParseDate(form["verified_on"], false)
	if err != nil {
		c.fail(w, r, who, uid, err, form)
		return
	}
	level := 3
	switch r.PostFormValue("level") {
	case "1":
		level = 1
	case "2":
		level = 2
	}
	v, p, err := c.Policy.RecordVerification(r.Context(), who.actor, uid, policy.Verification{
		Evidence: r.PostForm["evidence"], VerifiedOn: on, Level: level,
	})
	if err != nil {
		c.fail(w, r, who, uid, err, form)
		return
	}
	if err := c.record(r.Context(), who, "identity_verification", p.UID, p.UID, "",
		map[string]any{"evidence": v.Evidence, "verified_on": v.VerifiedOn.Format("2006-01-02"), "level": v.Level}); err != nil {
		c.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, personURL(uid, "verified"), http.StatusSeeOther)
}

// handleAssign assigns a position.
func (c *Console) handleAssign(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	uid := r.PathValue("uid")
	form := map[string]string{}
	for _, k := range []string{"org_code", "role_code", "activity_codes", "start", "end"} {
		form[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	start, err := policy.ParseDate(form["start"], false)
	if err != nil {
		c.fail(w, r, who, uid, err, form)
		return
	}
	end, err := policy.ParseDate(form["end"], true)
	if err != nil {
		c.fail(w, r, who, uid, err, form)
		return
	}
	var acts []string
	for _, a := range strings.FieldsFunc(form["activity_codes"], func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		acts = append(acts, strings.ToUpper(a))
	}
	acts = append(acts, r.PostForm["activity"]...)
	p, err := c.Policy.AssignPosition(r.Context(), who.actor, uid, policy.PositionInput{
		OrgCode: form["org_code"], RoleCode: form["role_code"], ActivityCodes: acts, StartsAt: start, EndsAt: end,
	})
	if err != nil {
		c.fail(w, r, who, uid, err, form)
		return
	}
	if err := c.record(r.Context(), who, "position", p.RoleID, p.PersonUID, p.OrgCode, map[string]any{
		"person_roleid": p.RoleID, "role_code": p.RoleCode, "org_code": p.OrgCode, "activity_codes": p.ActivityCodes,
		"pending_approval": p.PendingApproval,
	}); err != nil {
		c.unavailable(w, r, err)
		return
	}
	done := "assigned"
	if p.PendingApproval {
		done = "assigned_pending"
	}
	http.Redirect(w, r, personURL(uid, done), http.StatusSeeOther)
}

// handleEndPosition ends one of the person's positions.
func (c *Console) handleEndPosition(w http.ResponseWriter, r *http.Request) {
	c.changePosition(w, r, "ended", func(ctx context.Context, who *ra, id string) (policy.Position, map[string]any, error) {
		p, err := c.Policy.EndPosition(ctx, who.actor, id)
		return p, map[string]any{"ended_at": p.EndedAt.Format(time.RFC3339)}, err
	})
}

// handleApprovePosition approves a position waiting for a second RA
// Manager (the two-person rule; policy refuses the one who asked).
func (c *Console) handleApprovePosition(w http.ResponseWriter, r *http.Request) {
	c.changePosition(w, r, "approved", func(ctx context.Context, who *ra, id string) (policy.Position, map[string]any, error) {
		p, err := c.Policy.ApprovePosition(ctx, who.actor, id)
		return p, map[string]any{"approved_by": p.ApprovedBy}, err
	})
}

// changePosition applies change to the position in the path, which must
// be the person's, records it and shows the person with message done.
func (c *Console) changePosition(w http.ResponseWriter, r *http.Request, done string,
	change func(ctx context.Context, who *ra, id string) (policy.Position, map[string]any, error)) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	ctx := r.Context()
	uid, id := r.PathValue("uid"), r.PathValue("id")
	ps, err := c.Policy.ListPositionsAs(ctx, who.actor, uid)
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	if !slices.ContainsFunc(ps, func(x policy.Position) bool { return x.RoleID == id }) {
		c.fail(w, r, who, uid, fmt.Errorf("position: %w", store.ErrNotFound), map[string]string{})
		return
	}
	p, after, err := change(ctx, who, id)
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	if err := c.record(ctx, who, "position", p.RoleID, p.PersonUID, p.OrgCode, after); err != nil {
		c.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, personURL(uid, done), http.StatusSeeOther)
}

// handleRevoke revokes one of the person's security keys (a lost key).
func (c *Console) handleRevoke(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	ctx := r.Context()
	uid := r.PathValue("uid")
	if err := c.Policy.CheckPerson(ctx, who.actor, policy.ActRevokeCredential, uid); err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil || len(id) == 0 || len(id) > 1024 {
		c.fail(w, r, who, uid, fmt.Errorf("revoke: %w", store.ErrNotFound), map[string]string{})
		return
	}
	cr, err := c.Credentials.GetCredential(ctx, id)
	if err == nil && cr.PersonUID != uid {
		err = fmt.Errorf("revoke: %w", store.ErrNotFound)
	}
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	now := c.now().UTC()
	cr, err = c.Credentials.UpdateCredential(ctx, id, func(x *authn.Credential) error {
		if x.RevokedAt.IsZero() {
			x.RevokedAt = now
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	if err := c.record(ctx, who, "credential", base64.RawURLEncoding.EncodeToString(cr.ID), uid, "",
		map[string]any{"revoked_at": cr.RevokedAt.Format(time.RFC3339)}); err != nil {
		c.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, personURL(uid, "revoked"), http.StatusSeeOther)
}

// handleUnlock ends the person's lockout after failed sign-ins, recorded
// as an unlock event.
func (c *Console) handleUnlock(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	ctx := r.Context()
	uid := r.PathValue("uid")
	if c.Lockouts == nil {
		c.errorPage(w, r, http.StatusNotFound, "Not available", "This server keeps no sign-in lockouts.")
		return
	}
	if err := c.Policy.CheckPerson(ctx, who.actor, policy.ActUnlock, uid); err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	locked, until, err := c.Lockouts.Locked(ctx, uid)
	if err == nil {
		err = c.Lockouts.Unlock(ctx, uid)
	}
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	before := map[string]any{"locked": locked}
	if locked {
		before["locked_until"] = until.UTC().Format(time.RFC3339)
	}
	if err := audit.OrNop(c.Audit).Record(ctx, audit.Event{
		Type: audit.Unlock, Outcome: audit.Success, Actor: who.actor.Name(), Subject: uid,
		Detail: map[string]any{"before": before, "via": "ra_console"},
	}); err != nil {
		c.unavailable(w, r, fmt.Errorf("audit: %w", err))
		return
	}
	http.Redirect(w, r, personURL(uid, "unlocked"), http.StatusSeeOther)
}

// handleClose closes the account after an explicit confirmation.
func (c *Console) handleClose(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	uid := r.PathValue("uid")
	if r.PostFormValue("confirm") != "yes" {
		c.renderPerson(w, r, who, uid, http.StatusBadRequest,
			[]string{"Close account: tick the box to confirm that this person has left or must no longer sign in"}, "", map[string]string{})
		return
	}
	p, err := c.Policy.ClosePerson(r.Context(), who.actor, uid)
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	if err := c.record(r.Context(), who, "person", p.UID, p.UID, "", map[string]any{"status": p.Status}); err != nil {
		c.unavailable(w, r, err)
		return
	}
	http.Redirect(w, r, personURL(uid, "closed"), http.StatusSeeOther)
}

// signInRow is one recent sign-in on the person page.
type signInRow struct {
	When, Client, Place, Level, Outcome string
	Reasons                             []string
}

// signInRows shows at most ten decisions, newest first, as the RA reads them.
func signInRows(ds []policy.RiskDecision) []signInRow {
	rows := make([]signInRow, 0, min(len(ds), 10))
	for _, d := range ds[:min(len(ds), 10)] {
		row := signInRow{When: d.Time.UTC().Format("2 Jan 2006 15:04 UTC"), Client: d.ClientID, Place: d.Place,
			Level: string(d.Level), Outcome: d.Outcome}
		for _, sg := range d.Signals {
			row.Reasons = append(row.Reasons, sg.Reason)
		}
		rows = append(rows, row)
	}
	return rows
}
