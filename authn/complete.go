package authn

import (
	"context"
	"crypto/subtle"
	"net/http"

	"github.com/nhsid/nhsid/policy"
)

// A FlowCompleter finishes a flow of one kind inside the request that
// signed the person in, so that the browser's next stop needs no work of
// its own: idp issues the authorization code there, and the code's writes
// go with the sign-in's, in one round trip and one commit.
type FlowCompleter interface {
	// CompleteFlow is called by the login finish once the sign-in's writes
	// are queued in wctx; reads go through ctx. It returns the URL the
	// browser goes to next in place of the flow's ResumeURL, and a function
	// to call once the writes are sent. It returns "" and queues nothing
	// when the flow should resume as usual (a choice to make, a refusal to
	// show, anything it cannot settle alone). An error means something was
	// queued and the sign-in must fail.
	CompleteFlow(ctx, wctx context.Context, r *http.Request, f *Flow, s *Session, person policy.Person) (next string, sent func(), err error)
}

// SetFlowCompleter registers c for flows of kind. Call it while wiring the
// server, before it serves.
func (s *Service) SetFlowCompleter(kind string, c FlowCompleter) {
	if s.completers == nil {
		s.completers = map[string]FlowCompleter{}
	}
	s.completers[kind] = c
}

// BoundTo reports whether the request's browser-binding cookie is the one
// whose hash is bindingHash (a flow's BindingHash).
func (s *Service) BoundTo(r *http.Request, bindingHash []byte) bool {
	bind := s.cookie(r, bindCookie)
	return bind != "" && len(bindingHash) > 0 && subtle.ConstantTimeCompare(hashToken(bind), bindingHash) == 1
}
