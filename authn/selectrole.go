package authn

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
	"github.com/nhsid/nhsid/web"
)

// Role selection: the idp (or, later, the SAML IdP) sends the browser to
// GET /select-role?flow=<id> when a signed-in person holds several roles
// that qualify; POST /select-role (flow, role, csrf_token) records the
// choice on the flow and the session and returns the browser to the
// flow's resume URL, which issues the response.

// roleSearchThreshold: above this many roles the page offers a search box.
const roleSearchThreshold = 5

// MountSelectRole registers the role selection page on mux.
func (s *Service) MountSelectRole(mux *http.ServeMux) {
	mux.HandleFunc("GET /select-role", s.handleSelectRolePage)
	mux.HandleFunc("POST /select-role", s.handleSelectRole)
}

// roleOption is one radio button on the page.
type roleOption struct {
	RoleID   string
	RoleName string
	RoleCode string
	OrgName  string
	OrgCode  string
}

// selectRolePage is what select_role.html reads.
type selectRolePage struct {
	Title  string
	FlowID string
	CSRF   string
	Roles  []roleOption
	Total  int
	Search bool
	Query  string
	Error  string
}

// roleService is policy over the people store, which must also keep
// positions (both store adapters do).
func (s *Service) roleService() (*policy.Service, error) {
	rs, ok := s.people.(policy.RBACStore)
	if !ok {
		return nil, policy.ErrUnsupported
	}
	return &policy.Service{Store: s.people, RBAC: rs, Now: s.now, Rand: s.rand}, nil
}

// roleFlow loads the flow and checks that this browser's session is the
// one that authenticated it.
func (s *Service) roleFlow(r *http.Request, id string) (*Flow, *Session, error) {
	f, err := s.LoadFlow(r, id)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.CurrentSession(r)
	if err != nil {
		return nil, nil, err
	}
	if sess == nil || f.SessionSID == "" || sess.SID != f.SessionSID || !s.Usable(sess, s.now()) {
		return nil, nil, errInvalidFlow(errors.New("role selection without the flow's session"))
	}
	return f, sess, nil
}

// roleOptions returns the person's active positions as options, sorted by
// organisation then role name.
func (s *Service) roleOptions(r *http.Request, uid string) ([]roleOption, error) {
	svc, err := s.roleService()
	if err != nil {
		return nil, err
	}
	ps, err := svc.ActivePositions(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	_, idx, err := svc.Catalogue(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]roleOption, 0, len(ps))
	for _, p := range ps {
		name := idx.Roles[p.RoleCode].Name
		if name == "" {
			name = p.RoleCode
		}
		out = append(out, roleOption{RoleID: p.RoleID, RoleName: name, RoleCode: p.RoleCode, OrgName: p.OrgName, OrgCode: p.OrgCode})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].OrgName != out[j].OrgName {
			return out[i].OrgName < out[j].OrgName
		}
		return out[i].RoleName < out[j].RoleName
	})
	return out, nil
}

func filterRoles(all []roleOption, q string) []roleOption {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return all
	}
	var out []roleOption
	for _, o := range all {
		hay := strings.ToLower(o.RoleName + " " + o.RoleCode + " " + o.OrgName + " " + o.OrgCode + " " + o.RoleID)
		if strings.Contains(hay, q) {
			out = append(out, o)
		}
	}
	return out
}

func (s *Service) handleSelectRolePage(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	f, sess, err := s.roleFlow(r, r.URL.Query().Get("flow"))
	if err != nil {
		s.renderAPIError(w, r, "You cannot choose a role here", err)
		return
	}
	all, err := s.roleOptions(r, sess.PersonUID)
	if err != nil {
		s.renderAPIError(w, r, "You cannot choose a role here", fmt.Errorf("select role: %w", err))
		return
	}
	if len(all) == 0 {
		// Nothing to choose: the caller continues without a role.
		http.Redirect(w, r, resumeURL(f.ResumeURL, f.ID), http.StatusFound)
		return
	}
	q := r.URL.Query().Get("q")
	if len(q) > 100 {
		q = q[:100]
	}
	s.renderSelectRole(w, r, http.StatusOK, f, all, q, "")
}

func (s *Service) renderSelectRole(w http.ResponseWriter, r *http.Request, status int, f *Flow, all []roleOption, q, msg string) {
	allowFormRedirect(w, f)
	data := selectRolePage{Title: "Choose a role", FlowID: f.ID, CSRF: s.csrfToken(r), Total: len(all),
		Search: len(all) > roleSearchThreshold, Error: msg}
	data.Roles = all
	if data.Search {
		data.Query = q
		data.Roles = filterRoles(all, q)
	}
	if err := web.Render(w, status, "select_role", data); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", "select_role", "err", err)
	}
}

func (s *Service) handleSelectRole(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "You cannot choose a role here", "The form could not be read. Go back and try again.")
		return
	}
	f, sess, err := s.roleFlow(r, r.PostFormValue("flow"))
	if err != nil {
		s.renderAPIError(w, r, "You cannot choose a role here", err)
		return
	}
	if !s.checkCSRF(r) {
		s.renderError(w, r, http.StatusForbidden, "You cannot choose a role here", "The form has expired. Go back and try again.")
		return
	}
	all, err := s.roleOptions(r, sess.PersonUID)
	if err != nil {
		s.renderAPIError(w, r, "You cannot choose a role here", fmt.Errorf("select role: %w", err))
		return
	}
	role := r.PostFormValue("role")
	valid := false
	for _, o := range all {
		if o.RoleID == role {
			valid = true
			break
		}
	}
	if !valid {
		s.renderSelectRole(w, r, http.StatusBadRequest, f, all, "", "Select one of your roles.")
		return
	}
	ctx := r.Context()
	if _, err := s.store.UpdateFlow(ctx, f.ID, func(x *Flow) error {
		x.SelectedRoleID = role
		return nil
	}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = errInvalidFlow(err)
		}
		s.renderAPIError(w, r, "You cannot choose a role here", err)
		return
	}
	if _, err := s.store.UpdateSession(ctx, sess.IDHash, func(x *Session) error {
		x.SelectedRoleID = role
		return nil
	}); err != nil {
		s.renderAPIError(w, r, "You cannot choose a role here", apierror.New(http.StatusServiceUnavailable, "temporarily_unavailable", "Try again shortly.", err))
		return
	}
	if err := s.recorder().Record(ctx, audit.Event{
		Type: audit.RoleSelected, Subject: sess.PersonUID, Actor: sess.PersonUID, Client: f.ClientID,
		RoleID: role, SessionHash: audit.HashSession(sess.SID), Detail: map[string]any{"how": "chosen"},
	}); err != nil {
		s.renderAPIError(w, r, "You cannot choose a role here", apierror.New(http.StatusServiceUnavailable, "temporarily_unavailable", "Try again shortly.", err))
		return
	}
	s.log.InfoContext(ctx, "role selected", "person", sess.PersonUID, "sid", sess.SID, "person_roleid", role)
	http.Redirect(w, r, resumeURL(f.ResumeURL, f.ID), http.StatusFound)
}
