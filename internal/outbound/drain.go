package outbound

import (
	"context"
	"errors"
	"sync"
)

// Drain works through a queue of deliveries to integrators (back-channel
// logouts, OIDC and SAML) in passes: claim returns up to batch due items,
// leased to this caller, and attempt sends one and records the outcome,
// reporting whether it was delivered. Up to parallel attempts run at once,
// so a slow or dead receiver costs one attempt's timeout, not the pass.
// Draining stops after a pass that claimed fewer than batch, or when ctx
// ends. It returns how many were delivered and every error met.
func Drain[T any](ctx context.Context, batch, parallel int, claim func(context.Context, int) ([]T, error),
	attempt func(context.Context, T) (bool, error)) (int, error) {
	var (
		mu        sync.Mutex
		delivered int
		errs      []error
	)
	sem := make(chan struct{}, max(parallel, 1))
	for {
		items, err := claim(ctx, batch)
		if err != nil {
			return delivered, errors.Join(append(errs, err)...)
		}
		var wg sync.WaitGroup
		for _, it := range items {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ok, err := attempt(ctx, it)
				mu.Lock()
				defer mu.Unlock()
				if ok {
					delivered++
				}
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		if len(items) < batch || ctx.Err() != nil {
			return delivered, errors.Join(append(errs, ctx.Err())...)
		}
	}
}

// Outcome names a delivery attempt's outcome for metrics: "delivered",
// "given_up" (the last attempt failed) or "retry".
func Outcome(delivered, gaveUp bool) string {
	switch {
	case delivered:
		return "delivered"
	case gaveUp:
		return "given_up"
	}
	return "retry"
}
