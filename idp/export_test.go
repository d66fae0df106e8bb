package idp

import (
	"context"

	"github.com/ory/fosite/token/jwt"
)

// SignForTest signs claims with the active key for alg.
func (p *Provider) SignForTest(ctx context.Context, claims map[string]any, alg string) (string, error) {
	tok, _, err := keySigner{p: p}.Generate(ctx, claims, &jwt.Headers{Extra: map[string]any{algHeader: alg}})
	return tok, err
}

// VerifyForTest verifies a token against the key set by kid.
func (p *Provider) VerifyForTest(ctx context.Context, token string) error {
	_, err := keySigner{p: p}.Validate(ctx, token)
	return err
}

// TokenTagForTest is the tag, with its separator, of a token issued at t.
var TokenTagForTest = tokenTag
