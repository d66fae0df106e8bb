package idp

import (
	"context"
	"errors"
	"fmt"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store"
)

// ErrKeyNotFound means no signing key has the kid given to RevokeKey.
var ErrKeyNotFound = errors.New("no signing key with that kid")

// RevokeKey is the emergency revocation of a signing key (`nhsid keys
// revoke KID`): the key leaves JWKS at once, and every token it signed stops
// validating (JWT access tokens at introspection and userinfo, ID tokens
// as id_token_hint) on this replica now and on the others at their next key
// reload (keys.reload_interval). If the key was the one signing for its
// algorithm, a successor signs immediately: a pre-published key is brought
// forward, or a new key is made active now, skipping pre-publication
// (relying parties refetch JWKS on an unknown kid). An operator's emergency
// revocation needs no second approval; it is audited as such. actor names
// who revoked it. Revoking a revoked key is a no-op that returns it.
func (p *Provider) RevokeKey(ctx context.Context, kid, actor string) (SigningKey, error) {
	var out SigningKey
	err := p.withJobLock(ctx, "keys", true, func(ctx context.Context) error {
		now := p.now()
		var already bool
		k, err := p.deps.Store.UpdateKey(ctx, kid, func(sk *SigningKey) error {
			if !sk.RevokedAt.IsZero() {
				already = true
				return nil
			}
			sk.RevokedAt = now
			return nil
		})
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("revoke key %s: %w", kid, ErrKeyNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke key %s: %w", kid, err)
		}
		out = k
		if already {
			return nil
		}
		successor, err := p.ensureSigner(ctx, k.Alg)
		if err != nil {
			return err
		}
		p.log.WarnContext(ctx, "signing key revoked", "kid", k.KID, "alg", k.Alg, "actor", actor, "successor", successor)
		return p.recorder().Record(ctx, audit.Event{
			Type: audit.AdminChange, Actor: actor,
			Detail: map[string]any{"object": "signing_key", "id": k.KID, "emergency": true,
				"before": map[string]any{"revoked": false},
				"after":  map[string]any{"revoked": true, "alg": k.Alg, "successor": successor}},
		})
	})
	if err != nil {
		return out, err
	}
	return out, p.ReloadKeys(ctx)
}

// ensureSigner makes sure a key signs for alg now, after a revocation. It
// returns the kid of the signer.
func (p *Provider) ensureSigner(ctx context.Context, alg string) (string, error) {
	keys, err := p.deps.Store.ListKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("list keys: %w", err)
	}
	now := p.now()
	var pending *SigningKey
	for i, k := range keys {
		if k.Alg != alg || !k.RevokedAt.IsZero() || (!k.RetiredAt.IsZero() && !k.RetiredAt.After(now)) {
			continue
		}
		if !k.ActiveAt.After(now) {
			return k.KID, nil // a live signer remains
		}
		if pending == nil || k.ActiveAt.Before(pending.ActiveAt) {
			pending = &keys[i]
		}
	}
	if pending != nil {
		if _, err := p.deps.Store.UpdateKey(ctx, pending.KID, func(sk *SigningKey) error {
			sk.ActiveAt = now
			return nil
		}); err != nil {
			return "", fmt.Errorf("activate key %s: %w", pending.KID, err)
		}
		return pending.KID, nil
	}
	k, err := p.newSigningKey(alg, now, now)
	if err != nil {
		return "", err
	}
	if err := p.deps.Store.CreateKey(ctx, k); err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	if err := p.auditKeyRotated(ctx, k); err != nil {
		return "", err
	}
	return k.KID, nil
}
