package idp

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite/token/jwt"

	"github.com/nhsid/nhsid/internal/jobs"
)

// loadedKey is a signing key with its private half decrypted.
type loadedKey struct {
	SigningKey
	priv crypto.Signer
	pub  jose.JSONWebKey
}

// keySet holds the decrypted signing keys and the pre-rendered JWKS.
type keySet struct {
	mu    sync.RWMutex
	keys  map[string]*loadedKey // by kid
	jwks  []byte
	etag  string
	cache map[string]*loadedKey // decrypted keys by kid, kept across reloads
}

// sealKey encrypts a PKCS#8 private key under kek with AES-256-GCM; the kid
// is bound as additional data. Format: "v1" || nonce || ciphertext.
func sealKey(kek []byte, kid string, priv crypto.Signer, rnd io.Reader) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	out := append([]byte("v1"), nonce...)
	return gcm.Seal(out, nonce, der, []byte(kid)), nil
}

func openKey(kek []byte, kid string, sealed []byte) (crypto.Signer, error) {
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 2+gcm.NonceSize() || string(sealed[:2]) != "v1" {
		return nil, errors.New("open key: malformed sealed key")
	}
	nonce := sealed[2 : 2+gcm.NonceSize()]
	der, err := gcm.Open(nil, nonce, sealed[2+gcm.NonceSize():], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("open key %s: %w", kid, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse key %s: %w", kid, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key %s is not a signer", kid)
	}
	return s, nil
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	return cipher.NewGCM(block)
}

// generateKey makes a new key for alg: RSA-2048 for RS256/PS256, P-256 for ES256.
func generateKey(alg string, rnd io.Reader) (crypto.Signer, error) {
	switch alg {
	case AlgRS256, AlgPS256:
		return rsa.GenerateKey(rnd, 2048)
	case AlgES256:
		return ecdsa.GenerateKey(elliptic.P256(), rnd)
	}
	return nil, fmt.Errorf("unsupported algorithm %q", alg)
}

func (p *Provider) newSigningKey(alg string, now, activeAt time.Time) (SigningKey, error) {
	priv, err := generateKey(alg, rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate key: %w", err)
	}
	kidBytes := make([]byte, 12)
	if _, err := rand.Read(kidBytes); err != nil {
		return SigningKey{}, fmt.Errorf("kid: %w", err)
	}
	kid := strings.ToLower(alg) + "-" + now.UTC().Format("20060102") + "-" + base64.RawURLEncoding.EncodeToString(kidBytes)
	sealed, err := sealKey(p.cfg.KEK, kid, priv, rand.Reader)
	if err != nil {
		return SigningKey{}, err
	}
	pub := jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
	pubJSON, err := pub.MarshalJSON()
	if err != nil {
		return SigningKey{}, fmt.Errorf("marshal jwk: %w", err)
	}
	return SigningKey{KID: kid, Alg: alg, PrivateEncrypted: sealed, PublicJWK: pubJSON,
		CreatedAt: now, ActiveAt: activeAt}, nil
}

// maxTokenLifetime is how long a token signed by a key may stay valid.
func (p *Provider) maxTokenLifetime() time.Duration {
	return max(p.cfg.IDTokenTTL, p.cfg.AccessTokenTTL)
}

// EnsureKeys creates a key for every configured algorithm that has none
// usable now or pending; such a first key signs at once (nothing was signed
// before it, so no RP can hold a stale JWKS).
func (p *Provider) EnsureKeys(ctx context.Context) error {
	// Replicas starting together must not each create a first key.
	return p.withJobLock(ctx, "keys", true, p.ensureKeys)
}

// withJobLock runs fn under the store's job lock when it has one.
func (p *Provider) withJobLock(ctx context.Context, name string, wait bool, fn func(context.Context) error) error {
	return jobs.Locked(ctx, p.deps.Store, name, wait, fn)
}

func (p *Provider) ensureKeys(ctx context.Context) error {
	keys, err := p.deps.Store.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	now := p.now()
	var missing []string
	for _, alg := range p.cfg.SigningAlgs {
		if !hasCurrentKey(keys, alg, now) {
			missing = append(missing, alg)
		}
	}
	// Generate in parallel: RSA key generation dominates start-up time.
	made := make([]SigningKey, len(missing))
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	for i, alg := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			made[i], errs[i] = p.newSigningKey(alg, now, now)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, k := range made {
		if err := p.deps.Store.CreateKey(ctx, k); err != nil {
			return fmt.Errorf("create key: %w", err)
		}
	}
	return p.ReloadKeys(ctx)
}

// hasCurrentKey reports whether alg has a key that signs now or will take
// over (a not-retired, not-revoked key).
func hasCurrentKey(keys []SigningKey, alg string, now time.Time) bool {
	for _, k := range keys {
		if k.Alg == alg && k.RevokedAt.IsZero() && (k.RetiredAt.IsZero() || k.RetiredAt.After(now)) {
			return true
		}
	}
	return false
}

// RotateKeys publishes a new key for every algorithm. It signs from
// now+KeyPrePublish; the key it replaces keeps signing until then, is
// retired at that moment and stays in JWKS until every token it signed
// has expired.
func (p *Provider) RotateKeys(ctx context.Context) error {
	now := p.now()
	activeAt := now.Add(p.cfg.KeyPrePublish)
	for _, alg := range p.cfg.SigningAlgs {
		keys, err := p.deps.Store.ListKeys(ctx)
		if err != nil {
			return fmt.Errorf("list keys: %w", err)
		}
		k, err := p.newSigningKey(alg, now, activeAt)
		if err != nil {
			return err
		}
		if err := p.deps.Store.CreateKey(ctx, k); err != nil {
			return fmt.Errorf("create key: %w", err)
		}
		for _, old := range keys {
			if old.Alg != alg || !old.RevokedAt.IsZero() || !(old.RetiredAt.IsZero() || old.RetiredAt.After(activeAt)) {
				continue
			}
			_, err := p.deps.Store.UpdateKey(ctx, old.KID, func(sk *SigningKey) error {
				sk.RetiredAt = activeAt
				sk.ExpiresAt = activeAt.Add(p.maxTokenLifetime())
				return nil
			})
			if err != nil {
				return fmt.Errorf("retire key %s: %w", old.KID, err)
			}
		}
		p.log.InfoContext(ctx, "signing key rotated", "alg", alg, "kid", k.KID, "active_at", activeAt)
		if err := p.auditKeyRotated(ctx, k); err != nil {
			return err
		}
	}
	return p.ReloadKeys(ctx)
}

// ReloadKeys reads the keys from the store, decrypting new ones, and
// re-renders the JWKS.
func (p *Provider) ReloadKeys(ctx context.Context) error {
	keys, err := p.deps.Store.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	ks := p.keys
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.cache == nil {
		ks.cache = map[string]*loadedKey{}
	}
	now := p.now()
	set := map[string]*loadedKey{}
	var pubs []jose.JSONWebKey
	for _, k := range keys {
		if !k.RevokedAt.IsZero() || (!k.ExpiresAt.IsZero() && !k.ExpiresAt.After(now)) {
			continue
		}
		lk, ok := ks.cache[k.KID]
		if !ok {
			priv, err := openKey(p.cfg.KEK, k.KID, k.PrivateEncrypted)
			if err != nil {
				return err
			}
			lk = &loadedKey{priv: priv, pub: jose.JSONWebKey{Key: priv.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}}
			ks.cache[k.KID] = lk
		}
		lk.SigningKey = k
		set[k.KID] = lk
		pubs = append(pubs, lk.pub)
	}
	sort.SliceStable(pubs, func(i, j int) bool { return set[pubs[i].KeyID].CreatedAt.After(set[pubs[j].KeyID].CreatedAt) })
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: pubs})
	if err != nil {
		return fmt.Errorf("render jwks: %w", err)
	}
	sum := sha256.Sum256(body)
	ks.keys = set
	ks.jwks = body
	ks.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	return nil
}

// signingKey returns the key that signs for alg now: the most recently
// activated key whose activation has come and that is not retired.
func (p *Provider) signingKey(alg string) (*loadedKey, error) {
	now := p.now()
	ks := p.keys
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var best *loadedKey
	for _, k := range ks.keys {
		if k.Alg != alg || k.ActiveAt.After(now) || (!k.RetiredAt.IsZero() && !k.RetiredAt.After(now)) {
			continue
		}
		if best == nil || k.ActiveAt.After(best.ActiveAt) {
			best = k
		}
	}
	if best == nil {
		// A retired key beats no key: rotation and reload race at the edge.
		for _, k := range ks.keys {
			if k.Alg == alg && !k.ActiveAt.After(now) && (best == nil || k.ActiveAt.After(best.ActiveAt)) {
				best = k
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no signing key for %s", alg)
	}
	return best, nil
}

func (p *Provider) keyByID(kid string) (*loadedKey, bool) {
	ks := p.keys
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.keys[kid]
	return k, ok
}

// Run rotates keys on schedule and reloads them from the store until ctx
// ends, so that several replicas converge on the same key set.
func (p *Provider) Run(ctx context.Context) error {
	jobs.Every(ctx, p.cfg.KeyReloadInterval, nil, func(ctx context.Context) error {
		// One replica at a time checks and rotates; the others skip.
		if err := p.withJobLock(ctx, "keys", false, p.rotateIfDue); err != nil && ctx.Err() == nil {
			p.log.ErrorContext(ctx, "key rotation", "err", err)
		}
		return p.ReloadKeys(ctx)
	}, func(err error) { p.log.ErrorContext(ctx, "key reload", "err", err) })
	return nil
}

// rotateIfDue rotates when the newest key of any algorithm is older than
// KeyRotationInterval.
func (p *Provider) rotateIfDue(ctx context.Context) error {
	keys, err := p.deps.Store.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	now := p.now()
	for _, alg := range p.cfg.SigningAlgs {
		var newest time.Time
		for _, k := range keys {
			if k.Alg == alg && k.RevokedAt.IsZero() && k.CreatedAt.After(newest) {
				newest = k.CreatedAt
			}
		}
		if newest.IsZero() || now.Sub(newest) >= p.cfg.KeyRotationInterval {
			return p.RotateKeys(ctx)
		}
	}
	return nil
}

func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	ks := p.keys
	ks.mu.RLock()
	body, etag := ks.jwks, ks.etag
	ks.mu.RUnlock()
	w.Header().Set("Cache-Control", "public, max-age=900")
	w.Header().Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(body)
}

// keySigner is fosite's jwt.Signer over the key set: it signs with the
// active key for the requested algorithm and verifies by kid.
type keySigner struct {
	p *Provider
}

var _ jwt.Signer = keySigner{}

func (s keySigner) Generate(ctx context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	if claims == nil || header == nil {
		return "", "", errors.New("sign: claims or header is nil")
	}
	h := header.ToMap()
	alg, _ := h[algHeader].(string)
	if alg == "" {
		alg = s.p.cfg.KeyAlg
	}
	delete(h, algHeader)
	delete(h, "kid")
	delete(h, "alg")
	k, err := s.p.signingKey(alg)
	if err != nil {
		return "", "", fmt.Errorf("sign: %w", err)
	}
	h["kid"] = k.KID
	tok := jwt.NewWithClaims(jose.SignatureAlgorithm(alg), claims)
	tok.Header = h
	raw, err := tok.SignedString(k.priv)
	if err != nil {
		return "", "", fmt.Errorf("sign: %w", err)
	}
	sig, err := s.GetSignature(ctx, raw)
	return raw, sig, err
}

func (s keySigner) Decode(_ context.Context, token string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(token, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := s.p.keyByID(kid)
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		if string(t.Method) != k.Alg {
			return nil, fmt.Errorf("alg %q does not match key %q", t.Method, kid)
		}
		return k.priv.Public(), nil
	})
}

func (s keySigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

func (s keySigner) Hash(_ context.Context, in []byte) ([]byte, error) {
	sum := sha256.Sum256(in)
	return sum[:], nil
}

func (s keySigner) GetSignature(_ context.Context, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("header, body and signature must all be set")
	}
	return parts[2], nil
}

func (s keySigner) GetSigningMethodLength(context.Context) int { return sha256.Size }
