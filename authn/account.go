package authn

import (
	"encoding/base64"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nhsid/nhsid/store"
)

// accountSession returns the usable session of an account page, or starts a
// sign-in flow that comes back to resume and redirects to it.
func (s *Service) accountSession(w http.ResponseWriter, r *http.Request, resume string, minAAL int, fresh bool) *Session {
	sess, err := s.CurrentSession(r)
	if err != nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
		return nil
	}
	now := s.now()
	if sess != nil && s.Usable(sess, now) && sess.AAL >= minAAL && (!fresh || now.Sub(sess.AuthTime) <= s.cfg.AddDeviceWindow) {
		if err := s.TouchSession(r.Context(), sess); err != nil {
			s.log.Warn("touch session", "err", err)
		}
		// Coming back from sign-in: the flow has done its job.
		if id := r.URL.Query().Get("flow"); id != "" {
			if f, err := s.LoadFlow(r, id); err == nil && f.Kind == "account" {
				_ = s.FinishFlow(r.Context(), f.ID)
			}
		}
		return sess
	}
	loginURL, err := s.StartFlow(w, r, Flow{
		Kind: "account", RequestedAt: now.Truncate(time.Second), MinAAL: minAAL,
		ForceLogin: fresh, ResumeURL: resume,
	})
	if err != nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
		return nil
	}
	http.Redirect(w, r, loginURL, http.StatusSeeOther)
	return nil
}

// credentialView is one row of the account page.
type credentialView struct {
	ID, Name           string
	AAL                int
	Created, LastUsed  string
	Revoked, ThisLogin bool
}

// handleAccount lists the person's security keys.
func (s *Service) handleAccount(w http.ResponseWriter, r *http.Request) {
	sess := s.accountSession(w, r, "/account", AAL2, false)
	if sess == nil {
		return
	}
	s.renderAccount(w, r, sess, http.StatusOK, "", "")
}

func (s *Service) renderAccount(w http.ResponseWriter, r *http.Request, sess *Session, status int, errMsg, okMsg string) {
	creds, err := s.store.ListCredentials(r.Context(), sess.PersonUID)
	if err != nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
		return
	}
	p, err := s.people.GetPerson(r.Context(), sess.PersonUID)
	if err != nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
		return
	}
	day := func(t time.Time) string {
		if t.IsZero() {
			return "Never"
		}
		return t.UTC().Format("2 January 2006 15:04 MST")
	}
	var views []credentialView
	for _, c := range creds {
		views = append(views, credentialView{
			ID: b64url(c.ID), Name: c.Name, AAL: c.AAL, Created: day(c.CreatedAt), LastUsed: day(c.LastUsedAt),
			Revoked: !c.RevokedAt.IsZero(), ThisLogin: string(c.ID) == string(sess.CredentialID),
		})
	}
	sessions, err := s.sessionViews(r.Context(), sess)
	if err != nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
		return
	}
	decisions, err := s.RecentRiskDecisions(r.Context(), sess.PersonUID)
	if err != nil {
		s.log.WarnContext(r.Context(), "account: recent sign-ins", "err", err)
	}
	securityHeaders(w)
	s.render(w, r, status, "account", pageData{
		Title: "Your security keys", Name: (&waUser{person: p}).WebAuthnDisplayName(),
		Credentials: views, Sessions: sessions, CSRF: s.csrfToken(r), Error: errMsg, Notice: okMsg, SessionAAL: sess.AAL,
		SignIns: riskViews(decisions),
	})
}

// handleAddDevicePage lets a person who signed in at AAL3 in the last few
// minutes register another authenticator.
func (s *Service) handleAddDevicePage(w http.ResponseWriter, r *http.Request) {
	sess := s.accountSession(w, r, "/account/add-device", AAL3, true)
	if sess == nil {
		return
	}
	securityHeaders(w)
	s.render(w, r, http.StatusOK, "add_device", pageData{Title: "Add a security key or device"})
}

// ownCredential loads the credential named in the path if it belongs to the
// session's person.
func (s *Service) ownCredential(r *http.Request, sess *Session) (Credential, error) {
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil || len(id) == 0 {
		return Credential{}, store.ErrNotFound
	}
	c, err := s.store.GetCredential(r.Context(), id)
	if err != nil {
		return Credential{}, err
	}
	if c.PersonUID != sess.PersonUID {
		return Credential{}, store.ErrNotFound
	}
	return c, nil
}

// accountPost checks the session and the CSRF field of an account form.
func (s *Service) accountPost(w http.ResponseWriter, r *http.Request) *Session {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	sess, err := s.CurrentSession(r)
	if err != nil || sess == nil || !s.Usable(sess, s.now()) {
		s.renderError(w, r, http.StatusUnauthorized, "You are signed out", "Your session has ended. Sign in again to manage your security keys.")
		return nil
	}
	if !s.checkCSRF(r) {
		s.renderError(w, r, http.StatusForbidden, "The form has expired", "Go back to your account page, reload it and try again.")
		return nil
	}
	return sess
}

// handleRename renames one of the person's credentials.
func (s *Service) handleRename(w http.ResponseWriter, r *http.Request) {
	sess := s.accountPost(w, r)
	if sess == nil {
		return
	}
	c, err := s.ownCredential(r, sess)
	if err != nil {
		s.renderAccount(w, r, sess, http.StatusNotFound, "That security key was not found.", "")
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if name == "" || utf8.RuneCountInString(name) > 64 {
		s.renderAccount(w, r, sess, http.StatusBadRequest, "Enter a name of 1 to 64 characters.", "")
		return
	}
	if _, err := s.store.UpdateCredential(r.Context(), c.ID, func(x *Credential) error {
		x.Name = name
		return nil
	}); err != nil {
		s.renderAccount(w, r, sess, http.StatusServiceUnavailable, "The name could not be saved. Try again.", "")
		return
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// handleRevoke revokes one of the person's credentials, never the last
// usable one.
func (s *Service) handleRevoke(w http.ResponseWriter, r *http.Request) {
	sess := s.accountPost(w, r)
	if sess == nil {
		return
	}
	c, err := s.ownCredential(r, sess)
	if err != nil {
		s.renderAccount(w, r, sess, http.StatusNotFound, "That security key was not found.", "")
		return
	}
	if !c.RevokedAt.IsZero() {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	all, err := s.store.ListCredentials(r.Context(), sess.PersonUID)
	if err != nil {
		s.renderAccount(w, r, sess, http.StatusServiceUnavailable, "The security key could not be removed. Try again.", "")
		return
	}
	usable := 0
	for _, x := range all {
		if x.RevokedAt.IsZero() {
			usable++
		}
	}
	if usable <= 1 {
		s.renderAccount(w, r, sess, http.StatusBadRequest,
			"You cannot remove your only security key, or you would not be able to sign in. Add another key first, or ask your Registration Authority.", "")
		return
	}
	now := s.now()
	if _, err := s.store.UpdateCredential(r.Context(), c.ID, func(x *Credential) error {
		if x.RevokedAt.IsZero() {
			x.RevokedAt = now
		}
		return nil
	}); err != nil {
		s.renderAccount(w, r, sess, http.StatusServiceUnavailable, "The security key could not be removed. Try again.", "")
		return
	}
	if err := s.auditCredentialRevoked(r.Context(), sess, &c); err != nil {
		s.renderAccount(w, r, sess, http.StatusServiceUnavailable, "The security key could not be removed. Try again.", "")
		return
	}
	s.log.Info("credential revoked by its owner", "person", sess.PersonUID, "credential", b64url(c.ID))
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
