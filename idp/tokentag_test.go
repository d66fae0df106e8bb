package idp_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/idp"
)

// tagOf returns the issue time a token's tag holds.
func tagOf(t *testing.T, token string) time.Time {
	t.Helper()
	b, ok := idp.TokenTime(token)
	if !ok {
		t.Fatalf("token %q has no issue-time tag", token)
	}
	var w [8]byte
	copy(w[2:], b)
	return time.Unix(int64(binary.BigEndian.Uint64(w[:])), 0)
}

// retag is token with the tag of when instead of its own.
func retag(token string, when time.Time) string {
	return untag(token) + idp.TokenTagForTest(when)
}

func untag(token string) string { return token[:strings.LastIndexByte(token, '~')] }

func TestTokensCarryIssueTime(t *testing.T) {
	e := newEnv(t)
	e.clock.Add(7 * time.Minute) // a time that is not the wall clock's
	issued := e.clock.Now().Truncate(time.Second)
	_, c, sec, exchange, tok := e.exchangedCode()
	access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)
	for name, token := range map[string]string{"code": exchange.Get("code"), "access token": access, "refresh token": refresh} {
		if got := tagOf(t, token); !got.Equal(issued) {
			t.Errorf("%s issued at %v, tag says %v", name, issued, got)
		}
		if strings.Count(token, ".") != 1 {
			t.Errorf("%s %q: an opaque token has one dot (two would read as a JWT)", name, token)
		}
	}

	if !e.active(c.ID, sec, access) {
		t.Fatal("tagged access token is not active")
	}
	for name, forged := range map[string]string{
		"tag removed":     untag(access),
		"tag changed":     retag(access, issued.Add(time.Second)),
		"tag doubled":     access + access[strings.LastIndexByte(access, '~'):],
		"tag not base64":  untag(access) + "~AAAA*AAA",
		"tag on its own":  access[strings.LastIndexByte(access, '~'):],
		"separator alone": untag(access) + "~",
	} {
		if e.active(c.ID, sec, forged) {
			t.Errorf("%s: %q is active", name, forged)
		}
	}
	status, body := e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {retag(refresh, issued.Add(-time.Second))}})
	if status != http.StatusBadRequest {
		t.Errorf("refresh with a changed tag: %d %v, want 400", status, body)
	}

	// A token issued before tags existed has none, and its row is keyed by
	// its untagged signature: it still works.
	ctx := context.Background()
	tagged := access[strings.IndexByte(access, '.')+1:]
	req, err := e.store.GetAccessTokenSession(ctx, tagged, idp.NewSession())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateAccessTokenSession(ctx, untag(tagged), req); err != nil {
		t.Fatal(err)
	}
	if !e.active(c.ID, sec, untag(access)) {
		t.Error("an access token from before tags is not active")
	}
	status, body = e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status != http.StatusOK {
		t.Fatalf("refresh with the tagged refresh token: %d %v", status, body)
	}
	if got := tagOf(t, body["refresh_token"].(string)); !got.Equal(issued) {
		t.Errorf("rotated refresh token tagged %v, want %v", got, issued)
	}
}

func FuzzTokenTime(f *testing.F) {
	for _, s := range []string{"", "~", "~AAAAAAAA", "x~AAAAAAAA", "ory_at_a.b~AAAAaW5f", "a.b~AAAA*AAA", "a.b~AAAAAAAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, ok := idp.TokenTime(s)
		if !ok {
			return
		}
		if len(b) != 6 || len(s) < 10 || s[len(s)-9] != '~' {
			t.Fatalf("TokenTime(%q) = %x, true", s, b)
		}
		if enc := base64.RawURLEncoding.EncodeToString(b); enc != s[len(s)-8:] {
			t.Fatalf("TokenTime(%q) = %x, which encodes as %q", s, b, enc)
		}
	})
}
