package idp

import (
	"encoding/base64"
	"encoding/binary"
	"time"
)

// An opaque token (code, access or refresh token) ends in "~" and a tag:
// its issue time as 48-bit Unix seconds, in 8 base64url characters. fosite's
// HMAC covers the token without the tag, and fosite's signature of a token
// (the part after its ".") keeps it, so the store learns the issue time from
// the signature alone. store/postgres puts that time in front of a row's key,
// so each new row lands on the newest leaves of the token table's primary
// key instead of a random one (docs/performance.md, round 16).
//
// The tag needs no protection: the key is the time and a hash of the whole
// signature, tag included, so a token whose tag was changed or removed
// finds no row. Tokens issued before tags existed have none and keep their
// old keys.

const (
	tokenTagSep  = '~'
	tokenTagLen  = 8 // base64url characters of 6 bytes
	tokenTagSize = 6 // bytes
)

// tokenTag is the tag, with its separator, of a token issued at t.
func tokenTag(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(t.Unix(), 0)))
	return string(tokenTagSep) + base64.RawURLEncoding.EncodeToString(b[8-tokenTagSize:])
}

// TokenTime returns the issue time that a tagged token, or its signature,
// ends with, as the 6 big-endian bytes the tag encodes. ok is false for a
// token without a well-formed tag.
func TokenTime(s string) (prefix []byte, ok bool) {
	n := len(s) - tokenTagLen - 1
	if n < 1 || s[n] != tokenTagSep {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s[n+1:])
	if err != nil || len(b) != tokenTagSize {
		return nil, false
	}
	return b, true
}

// untagged is token without its tag, as fosite's HMAC check expects it.
func untagged(token string) string {
	if _, ok := TokenTime(token); ok {
		return token[:len(token)-tokenTagLen-1]
	}
	return token
}

// tagged adds the tag of now to a token fosite made and to its signature.
func tagged(now time.Time, token, signature string, err error) (string, string, error) {
	if err != nil {
		return "", "", err
	}
	tag := tokenTag(now)
	return token + tag, signature + tag, nil
}
