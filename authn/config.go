package authn

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/policy"
)

// Config is authn's part of the server configuration.
type Config struct {
	// RPID is the WebAuthn relying party id (a host name, never an IP
	// address). Defaults to the host of PublicURL.
	RPID string `yaml:"rp_id"`
	// RPDisplayName is shown by authenticators. Defaults to "NHS ID".
	RPDisplayName string `yaml:"rp_display_name"`
	// RPOrigins are the origins WebAuthn responses may come from. Defaults
	// to the origin of PublicURL.
	RPOrigins []string `yaml:"rp_origins"`
	// PublicURL is the public base URL of the server (the issuer), without
	// a trailing slash.
	PublicURL string `yaml:"public_url"`
	// SecureCookies marks cookies Secure and gives them the __Host- prefix.
	// False only in development over plain http://localhost.
	SecureCookies bool `yaml:"secure_cookies"`

	InviteTTL    time.Duration `yaml:"invite_ttl"`
	FlowTTL      time.Duration `yaml:"flow_ttl"`
	ChallengeTTL time.Duration `yaml:"challenge_ttl"`

	AAL3Absolute time.Duration `yaml:"aal3_absolute"`
	AAL3Idle     time.Duration `yaml:"aal3_idle"`
	AAL2Absolute time.Duration `yaml:"aal2_absolute"`
	AAL2Idle     time.Duration `yaml:"aal2_idle"`

	// AddDeviceWindow is how recently an AAL3 sign-in must have happened
	// for a signed-in person to add another authenticator. Default 5m.
	AddDeviceWindow time.Duration `yaml:"add_device_window"`

	// MDSFile is the path of a FIDO MDS3 blob (a signed JWT) read at start.
	// Optional.
	MDSFile string `yaml:"mds_file"`
	// MDSRootCert is the path of a PEM certificate that signs the MDS blob,
	// replacing the FIDO Alliance root (for test blobs). Optional.
	MDSRootCert string `yaml:"mds_root_cert"`
	// TrustAnchors are PEM files of extra attestation root certificates.
	TrustAnchors []string `yaml:"trust_anchors"`
	// AAGUIDAllowList, when not empty, restricts AAL3 to these
	// authenticator models (AAGUIDs in canonical UUID form).
	AAGUIDAllowList []string `yaml:"aaguid_allow_list"`
}

// Defaults for Config.
const (
	DefaultInviteTTL       = 15 * time.Minute
	DefaultFlowTTL         = 15 * time.Minute
	DefaultChallengeTTL    = 5 * time.Minute
	DefaultAAL3Absolute    = 12 * time.Hour
	DefaultAAL3Idle        = 15 * time.Minute
	DefaultAAL2Absolute    = 12 * time.Hour
	DefaultAAL2Idle        = 30 * time.Minute
	DefaultAddDeviceWindow = 5 * time.Minute
)

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.RPDisplayName == "" {
		c.RPDisplayName = "NHS ID"
	}
	if u, err := url.Parse(c.PublicURL); err == nil && u.Host != "" {
		if c.RPID == "" {
			c.RPID = u.Hostname()
		}
		if len(c.RPOrigins) == 0 {
			c.RPOrigins = []string{u.Scheme + "://" + u.Host}
		}
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.InviteTTL, DefaultInviteTTL)
	set(&c.FlowTTL, DefaultFlowTTL)
	set(&c.ChallengeTTL, DefaultChallengeTTL)
	set(&c.AAL3Absolute, DefaultAAL3Absolute)
	set(&c.AAL3Idle, DefaultAAL3Idle)
	set(&c.AAL2Absolute, DefaultAAL2Absolute)
	set(&c.AAL2Idle, DefaultAAL2Idle)
	set(&c.AddDeviceWindow, DefaultAddDeviceWindow)
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.PublicURL)
	switch {
	case c.PublicURL == "":
		errs = append(errs, errors.New("public_url is required"))
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		errs = append(errs, fmt.Errorf("public_url %q is not an absolute http(s) URL", c.PublicURL))
	case u.Scheme == "http" && c.SecureCookies:
		errs = append(errs, errors.New("secure_cookies needs an https public_url"))
	}
	if c.RPID == "" {
		errs = append(errs, errors.New("rp_id is required"))
	}
	if len(c.RPOrigins) == 0 {
		errs = append(errs, errors.New("rp_origins must not be empty"))
	}
	for _, o := range c.RPOrigins {
		if ou, err := url.Parse(o); err != nil || ou.Host == "" || ou.Path != "" {
			errs = append(errs, fmt.Errorf("rp_origins: %q is not an origin", o))
		}
	}
	for name, d := range map[string]time.Duration{
		"invite_ttl": c.InviteTTL, "flow_ttl": c.FlowTTL, "challenge_ttl": c.ChallengeTTL,
		"aal3_absolute": c.AAL3Absolute, "aal3_idle": c.AAL3Idle,
		"aal2_absolute": c.AAL2Absolute, "aal2_idle": c.AAL2Idle,
		"add_device_window": c.AddDeviceWindow,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.AAL3Idle > c.AAL3Absolute || c.AAL2Idle > c.AAL2Absolute {
		errs = append(errs, errors.New("an idle timeout is longer than its absolute lifetime"))
	}
	for _, a := range c.AAGUIDAllowList {
		if _, err := uuid.Parse(a); err != nil {
			errs = append(errs, fmt.Errorf("aaguid_allow_list: %q is not a UUID", a))
		}
	}
	if c.MDSRootCert != "" && c.MDSFile == "" {
		errs = append(errs, errors.New("mds_root_cert is set without mds_file"))
	}
	return errors.Join(errs...)
}

// Deps are the service's collaborators.
type Deps struct {
	Store  Store
	People policy.Store
	Log    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of ids, cookies and invite codes; nil means
	// crypto/rand.
	Rand io.Reader
	// Audit records sign-in events; nil records nothing.
	Audit audit.Recorder
	// Limiter slows down and locks out repeated failed sign-ins per
	// person (shared across replicas); nil limits nothing.
	Limiter *ratelimit.Limiter
	// Risk evaluates each sign-in in context (risk.go); nil evaluates
	// nothing.
	Risk *Risk
}
