package authn

import (
	"context"
	"net/http"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/detach"
	"github.com/nhsid/nhsid/internal/ratelimit"
)

// limitRefusal is a per-person refusal: the API error plus the wait that
// goes into Retry-After.
type limitRefusal struct {
	err      error
	decision ratelimit.Decision
}

// checkPerson refuses a sign-in for a person who is locked out or within
// their progressive delay. It returns nil when the attempt may go ahead.
func (s *Service) checkPerson(ctx context.Context, uid string) (failures int, _ *limitRefusal, _ error) {
	if s.limiter == nil {
		return 0, nil, nil
	}
	d, err := s.limiter.Check(ctx, ratelimit.PersonKey(uid))
	if err != nil {
		return 0, nil, err
	}
	if d.Allowed {
		return d.Failures, nil, nil
	}
	return d.Failures, &limitRefusal{err: ratelimit.Error(d), decision: d}, nil
}

// personFailed records a failed sign-in of uid, and a lockout it causes,
// even when the client has hung up: leaving right after a failed attempt
// must not take it off the count.
func (s *Service) personFailed(ctx context.Context, uid string) {
	if s.limiter == nil || uid == "" {
		return
	}
	ctx, cancel := detach.Context(ctx)
	defer cancel()
	d, err := s.limiter.Fail(ctx, ratelimit.PersonKey(uid))
	if err != nil {
		s.log.WarnContext(ctx, "record failed sign-in", "person", uid, "err", err.Error())
		return
	}
	if d.JustLocked {
		if err := s.recorder().Record(ctx, audit.Event{
			Type: audit.Lockout, Outcome: audit.Denied, Subject: uid, Actor: "system",
			Detail: map[string]any{"reason": "failed_signins", "locked_seconds": int(d.RetryAfter.Seconds())},
		}); err != nil {
			s.log.WarnContext(ctx, "audit lockout", "person", uid, "err", err.Error())
		}
	}
}

// personSucceeded forgets uid's failed sign-ins; failures is how many
// checkPerson saw, and with none there is nothing to forget. (One that
// came in between stays until its window ends, as if it had come later.)
func (s *Service) personSucceeded(ctx context.Context, uid string, failures int) {
	if s.limiter == nil || failures == 0 {
		return
	}
	if err := s.limiter.Succeed(ctx, ratelimit.PersonKey(uid)); err != nil {
		s.log.WarnContext(ctx, "reset failed sign-ins", "person", uid, "err", err.Error())
	}
}

// failLimited writes a per-person refusal with Retry-After.
func (s *Service) failLimited(w http.ResponseWriter, r *http.Request, lr *limitRefusal) {
	ratelimit.SetRetryAfter(w, lr.decision.RetryAfter)
	s.fail(w, r, lr.err)
}
