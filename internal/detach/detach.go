// Package detach gives work that must finish once it has begun, whatever
// the client does, a context of its own: a refused sign-in's record and
// failure count, a token request's writes, the revocation of a reused
// code's grant. A client that hangs up must not be able to cut them short.
package detach

import (
	"context"
	"time"
)

// Timeout bounds detached work when the request had no deadline of its
// own (nhsid's database.request_timeout sets one on every request).
const Timeout = 5 * time.Second

// Context returns a context with ctx's values and deadline (Timeout from
// now when ctx has none) that is not cancelled when ctx is. Call cancel
// when the work is done.
func Context(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl)
	}
	return context.WithTimeout(d, Timeout)
}
