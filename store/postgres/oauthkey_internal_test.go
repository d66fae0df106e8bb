package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/ory/fosite"
)

// tagAt is the issue-time tag idp puts on a token issued at t.
func tagAt(t time.Time) string {
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(t.Unix()))
	return "~" + base64.RawURLEncoding.EncodeToString(w[2:])
}

func TestOAuthHashKeysByIssueTime(t *testing.T) {
	t1 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	early, late := "zzzz"+tagAt(t1), "aaaa"+tagAt(t1.Add(time.Second))
	for _, sig := range []string{early, late} {
		k, h := oauthHash(sig), sha256.Sum256([]byte(sig))
		if len(k) != sha256.Size || !bytes.Equal(k[6:], h[:sha256.Size-6]) {
			t.Errorf("key of %q = %x, want its time, then its SHA-256 %x", sig, k, h)
		}
	}
	if a, b := oauthHash(early), oauthHash(late); bytes.Compare(a, b) >= 0 {
		t.Errorf("key of a later token %x sorts before an earlier one's %x", b, a)
	}
	for _, sig := range []string{"abcd", "abcd~AAAA*AAA", "abcd~AAAAAAAAA", "~AAAAAAAA", "abcd~"} {
		if h := sha256.Sum256([]byte(sig)); !bytes.Equal(oauthHash(sig), h[:]) {
			t.Errorf("key of untagged %q = %x, want its SHA-256", sig, oauthHash(sig))
		}
	}
}

func TestTokenRowsKeyedByIssueTime(t *testing.T) {
	s, req := oauthTestStore(t)
	ctx := context.Background()
	now := time.Now()
	sig := "c2lnbmF0dXJl" + tagAt(now)
	if err := s.CreateAccessTokenSession(ctx, sig, req); err != nil {
		t.Fatal(err)
	}
	var key []byte
	if err := s.pool.QueryRow(ctx, `SELECT signature_hash FROM oauth_tokens WHERE kind = 'access' AND request_id = $1`, req.ID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(now.Unix()))
	if !bytes.HasPrefix(key, w[2:]) {
		t.Errorf("row key %x does not start with the issue time %x", key, w[2:])
	}
	if _, err := s.GetAccessTokenSession(ctx, sig, nil); err != nil {
		t.Errorf("look-up by the tagged signature: %v", err)
	}
	for _, other := range []string{"c2lnbmF0dXJl", "c2lnbmF0dXJl" + tagAt(now.Add(time.Second))} {
		if _, err := s.GetAccessTokenSession(ctx, other, nil); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("look-up by %q: %v, want not found", other, err)
		}
	}
}
