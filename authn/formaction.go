package authn

import (
	"net/http"
	"net/url"
	"strings"
)

// allowFormRedirect widens form-action on a page whose form ends an OIDC
// flow: browsers apply form-action to every redirect that follows a form
// submission, so POST /select-role → /oauth2/authorize/resume → the
// relying party's redirect_uri is blocked under form-action 'self' alone.
// It adds only the origin of the flow's own redirect_uri (checked against
// the client's registration when the flow was created).
func allowFormRedirect(w http.ResponseWriter, f *Flow) {
	if f == nil || f.Kind != "oidc" {
		return
	}
	q, err := url.ParseQuery(f.Request)
	if err != nil {
		return
	}
	u, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(u.Host, " ;,'\"") {
		return
	}
	h := w.Header()
	csp := h.Get("Content-Security-Policy")
	h.Set("Content-Security-Policy", strings.Replace(csp, "form-action 'self'", "form-action 'self' "+u.Scheme+"://"+u.Host, 1))
}
