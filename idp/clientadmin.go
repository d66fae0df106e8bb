package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/store"
)

// Changing a registered client (the admin API's PATCH, secret rotation
// and the end of a rotation's overlap). Every change is validated as a
// registration is, happens under the client's row lock, and is recorded
// as client.changed (never with a secret).

// immutableClientFields are the metadata a change may not set.
var immutableClientFields = []string{"client_id", "client_secret", "created_at", "updated_at"}

// usesSecret reports whether c authenticates with a client secret.
func usesSecret(c *Client) bool {
	return c.TokenEndpointAuthMethod == AuthClientSecretBasic || c.TokenEndpointAuthMethod == AuthClientSecretPost
}

func invalidClientMetadata(msg string) error {
	return apierror.New(http.StatusBadRequest, "invalid_client_metadata", msg, nil)
}

// UpdateClient changes client id's metadata for actor (recorded). patch holds the RFC 7591 (and
// nhsid_*) fields to replace, each whole; a field set to null goes back to
// its default; "disabled": true stops the client at every endpoint. The
// result is validated as a registration is. A client that moves to a
// secret-based authentication method gets a new secret, returned once;
// one that moves away from it loses its secrets.
func (p *Provider) UpdateClient(ctx context.Context, actor, id string, patch map[string]json.RawMessage) (*Client, string, error) {
	if len(patch) == 0 {
		return nil, "", invalidClientMetadata("The change is empty.")
	}
	fields := make([]string, 0, len(patch))
	for k := range patch {
		if slices.Contains(immutableClientFields, k) {
			return nil, "", invalidClientMetadata(k + " cannot be changed.")
		}
		fields = append(fields, k)
	}
	slices.Sort(fields)
	var secret string
	var disabled bool
	c, err := p.deps.Store.UpdateClient(ctx, id, func(c *Client) error {
		next, err := mergeClient(c, patch)
		if err != nil {
			return err
		}
		if probs := ValidateClient(next); len(probs) > 0 {
			return invalidClientMetadata(strings.Join(probs, "; "))
		}
		next.ID, next.CreatedAt, next.UpdatedAt = c.ID, c.CreatedAt, p.now()
		next.SecretHash, next.RotatedSecretHashes = c.SecretHash, c.RotatedSecretHashes
		switch {
		case usesSecret(next) && len(next.SecretHash) == 0:
			if secret, err = randomString(32); err != nil {
				return err
			}
			next.SecretHash, _ = p.hasher.Hash(ctx, []byte(secret))
			next.RotatedSecretHashes = nil
		case !usesSecret(next):
			next.SecretHash, next.RotatedSecretHashes = nil, nil
		}
		disabled = next.Disabled
		*c = *next
		return nil
	})
	if err != nil {
		return nil, "", clientChangeErr(err)
	}
	detail := map[string]any{"change": "metadata", "fields": fields, "disabled": disabled}
	if secret != "" {
		detail["new_client_credential"] = true
	}
	if err := p.auditClientChanged(ctx, actor, id, detail); err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// mergeClient returns c with patch's top-level fields replacing its own.
// Unknown fields are refused, as at registration.
func mergeClient(c *Client, patch map[string]json.RawMessage) (*Client, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode client: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("encode client: %w", err)
	}
	for k, v := range patch {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	merged, err := json.Marshal(m)
	if err != nil {
		return nil, invalidClientMetadata("The change is not valid JSON.")
	}
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	var next Client
	if err := dec.Decode(&next); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return nil, invalidClientMetadata(fmt.Sprintf("Field %q has the wrong type.", ute.Field))
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return nil, invalidClientMetadata("Unknown " + strings.TrimPrefix(err.Error(), "json: unknown ") + ".")
		}
		return nil, invalidClientMetadata("The change does not make valid client metadata.")
	}
	return &next, nil
}

// RotateClientSecret issues client id a new secret, returned once. The
// secret it had stays valid beside the new one until EndSecretOverlap or
// the next rotation, so that a relying party can switch without an outage;
// any older one ends now.
func (p *Provider) RotateClientSecret(ctx context.Context, actor, id string) (string, error) {
	var secret string
	_, err := p.deps.Store.UpdateClient(ctx, id, func(c *Client) error {
		if !usesSecret(c) {
			return invalidClientMetadata("The client authenticates with " + c.TokenEndpointAuthMethod + ", not a secret; change its jwks instead.")
		}
		var err error
		if secret, err = randomString(32); err != nil {
			return err
		}
		if len(c.SecretHash) > 0 {
			c.RotatedSecretHashes = [][]byte{c.SecretHash}
		}
		c.SecretHash, _ = p.hasher.Hash(ctx, []byte(secret))
		c.UpdatedAt = p.now()
		return nil
	})
	if err != nil {
		return "", clientChangeErr(err)
	}
	if err := p.auditClientChanged(ctx, actor, id, map[string]any{"change": "secret_rotated"}); err != nil {
		return "", err
	}
	return secret, nil
}

// EndSecretOverlap stops accepting client id's previous secret. It
// reports whether there was one.
func (p *Provider) EndSecretOverlap(ctx context.Context, actor, id string) (bool, error) {
	var had bool
	_, err := p.deps.Store.UpdateClient(ctx, id, func(c *Client) error {
		had = len(c.RotatedSecretHashes) > 0
		c.RotatedSecretHashes = nil
		if had {
			c.UpdatedAt = p.now()
		}
		return nil
	})
	if err != nil {
		return false, clientChangeErr(err)
	}
	if !had {
		return false, nil
	}
	return true, p.auditClientChanged(ctx, actor, id, map[string]any{"change": "secret_overlap_ended"})
}

// clientChangeErr keeps API errors and says "not found" plainly.
func clientChangeErr(err error) error {
	var ae *apierror.Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, store.ErrNotFound):
		return apierror.New(http.StatusNotFound, "not_found", "No such client.", err)
	}
	return fmt.Errorf("change client: %w", err)
}

// auditClientChanged records actor's change to a client (never a secret).
func (p *Provider) auditClientChanged(ctx context.Context, actor, id string, detail map[string]any) error {
	return p.recorder().Record(ctx, audit.Event{Type: audit.ClientChanged, Actor: actor, Client: id, Detail: detail})
}
