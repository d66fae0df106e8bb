package authn

import (
	"errors"
	"net/http"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/web"
)

// pageData is what authn's templates read.
type pageData struct {
	Title       string
	FlowID      string
	StepUp      bool
	Invite      string
	Name        string
	Credentials []credentialView
	Sessions    []sessionView
	CSRF        string
	SessionAAL  int
	Error       string
	Notice      string
	Heading     string
	Message     string
	// SignIns are recent sign-ins with their risk reasons (risk.go).
	SignIns []riskView
}

// render writes a page; a template failure is logged (the page is
// compiled in, so it means a bug).
func (s *Service) render(w http.ResponseWriter, r *http.Request, status int, name string, data pageData) {
	if err := web.Render(w, status, name, data); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
	}
}

// renderError shows a page explaining a problem.
func (s *Service) renderError(w http.ResponseWriter, r *http.Request, status int, heading, message string) {
	securityHeaders(w)
	s.render(w, r, status, "error", pageData{Title: heading, Heading: heading, Message: message})
}

// renderAPIError shows err, an *apierror.Error or not, as a page.
func (s *Service) renderAPIError(w http.ResponseWriter, r *http.Request, heading string, err error) {
	var e *apierror.Error
	if !errors.As(err, &e) {
		s.log.ErrorContext(r.Context(), "page failed", "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "Sorry, there is a problem with the service", "Try again later.")
		return
	}
	s.renderError(w, r, e.Status, heading, e.Message)
}
