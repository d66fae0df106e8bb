package idp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
)

// Supported token signing algorithms.
const (
	AlgRS256 = "RS256"
	AlgPS256 = "PS256"
	AlgES256 = "ES256"
)

// Config configures the provider. Zero durations take the defaults below.
type Config struct {
	// Issuer is the public issuer URL, e.g. https://idp.example.nhs.uk.
	Issuer string
	// GlobalSecret is fosite's HMAC secret for opaque tokens (≥ 32 bytes).
	GlobalSecret []byte
	// RotatedGlobalSecrets are older HMAC secrets still accepted.
	RotatedGlobalSecrets [][]byte
	// SecretPepper keys the HMAC-SHA-256 hash of client secrets.
	SecretPepper []byte
	// KEK is the 32-byte key-encryption key sealing private signing keys.
	KEK []byte

	AccessTokenTTL time.Duration // default 1h (expires_in 3599/3600)
	IDTokenTTL     time.Duration // default 1h
	AuthCodeTTL    time.Duration // default 5m
	RefreshTTL     time.Duration // default 12h
	RefreshGrace   time.Duration // default 5s
	PARTTL         time.Duration // default 90s

	// KeyAlg is the default ID token signing algorithm (RS256).
	KeyAlg string
	// SigningAlgs are the algorithms for which keys are kept (default
	// RS256, PS256, ES256).
	SigningAlgs []string
	// KeyRotationInterval is how often signing keys rotate (default 30 days).
	KeyRotationInterval time.Duration
	// KeyPrePublish is how long a new key sits in JWKS before it signs
	// (default 1h; 0 in Dev).
	KeyPrePublish time.Duration
	// KeyReloadInterval is how often Run reloads keys from the store (default 1m).
	KeyReloadInterval time.Duration

	// Logout tunes back-channel logout delivery (backchannel.go).
	Logout LogoutConfig

	// Dev relaxes key pre-publication.
	Dev bool
}

func (c *Config) setDefaults() {
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AccessTokenTTL, time.Hour)
	def(&c.IDTokenTTL, time.Hour)
	def(&c.AuthCodeTTL, 5*time.Minute)
	def(&c.RefreshTTL, 12*time.Hour)
	def(&c.RefreshGrace, 5*time.Second)
	def(&c.PARTTL, 90*time.Second)
	def(&c.KeyRotationInterval, 30*24*time.Hour)
	def(&c.KeyReloadInterval, time.Minute)
	if c.KeyPrePublish == 0 && !c.Dev {
		c.KeyPrePublish = time.Hour
	}
	if c.Dev {
		c.KeyPrePublish = 0
	}
	if c.KeyAlg == "" {
		c.KeyAlg = AlgRS256
	}
	if len(c.SigningAlgs) == 0 {
		c.SigningAlgs = []string{AlgRS256, AlgPS256, AlgES256}
	}
	if !contains(c.SigningAlgs, c.KeyAlg) {
		c.SigningAlgs = append([]string{c.KeyAlg}, c.SigningAlgs...)
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		errs = append(errs, errors.New("issuer is required"))
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		errs = append(errs, fmt.Errorf("issuer %q is not an absolute http(s) URL", c.Issuer))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, errors.New("issuer must not have a query or fragment"))
	case u.Scheme == "http" && !c.Dev && !isLoopbackHost(u.Hostname()):
		errs = append(errs, errors.New("issuer must use https outside dev"))
	}
	if len(c.GlobalSecret) < 32 {
		errs = append(errs, errors.New("global secret must be at least 32 bytes"))
	}
	for i, s := range c.RotatedGlobalSecrets {
		if len(s) < 32 {
			errs = append(errs, fmt.Errorf("rotated global secret %d must be at least 32 bytes", i))
		}
	}
	if len(c.SecretPepper) < 32 {
		errs = append(errs, errors.New("client secret pepper must be at least 32 bytes"))
	}
	if len(c.KEK) != 32 {
		errs = append(errs, errors.New("key-encryption key must be 32 bytes"))
	}
	for _, a := range c.SigningAlgs {
		if !validAlg(a) {
			errs = append(errs, fmt.Errorf("unsupported signing algorithm %q", a))
		}
	}
	if c.RefreshGrace < 0 || c.KeyPrePublish < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

func validAlg(a string) bool { return a == AlgRS256 || a == AlgPS256 || a == AlgES256 }

func isLoopbackHost(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// fositeConfig embeds fosite's Config and accepts both the token endpoint
// and the issuer as private_key_jwt audience (openid-client and oauth4webapi
// send the issuer).
type fositeConfig struct {
	*fosite.Config
	issuer string
}

func (c *fositeConfig) GetTokenURLs(ctx context.Context) []string {
	return []string{c.Config.TokenURL, c.issuer}
}
