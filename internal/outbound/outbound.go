// Package outbound is nhsid's one guarded HTTP client for calls to URLs that
// integrators supply: a client's jwks_uri, SAML SP metadata URLs and
// back-channel logout URIs (DESIGN.md "Outbound calls"). It applies
// timeouts, caps response bodies, refuses redirects to another host and
// refuses to connect to loopback, link-local, private and other
// non-public addresses — checked on the resolved address at dial time, so
// DNS tricks and redirects cannot reach the internal network. Tests may
// allow loopback (AllowLoopback) or every address (AllowPrivate).
//
// idp and federation/saml import it; internal/server builds the one
// Client and passes it to them. Drain (drain.go) works
// through their durable back-channel logout queues.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress is returned (wrapped) when a URL resolves to an
// address outside the public internet.
var ErrForbiddenAddress = errors.New("outbound: address not allowed")

// ErrRedirect is returned (wrapped) for a redirect to another host.
var ErrRedirect = errors.New("outbound: redirect to another host refused")

// ErrTooLarge is returned (wrapped) when a response body is larger than
// MaxBody.
var ErrTooLarge = errors.New("outbound: response too large")

// Options configure New. Zero values take the defaults.
type Options struct {
	// Timeout bounds a whole request, including reading the body (default 10s).
	Timeout time.Duration
	// DialTimeout bounds connecting (default 5s).
	DialTimeout time.Duration
	// MaxBody caps a response body (default 1 MiB); reading more fails
	// with ErrTooLarge.
	MaxBody int64
	// MaxRedirects is how many same-host redirects are followed (default 3).
	MaxRedirects int
	// AllowLoopback permits 127.0.0.0/8 and ::1 (tests).
	AllowLoopback bool
	// AllowPrivate permits every address (tests and closed networks).
	AllowPrivate bool
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.MaxRedirects <= 0 {
		o.MaxRedirects = 3
	}
}

// New returns the guarded *http.Client.
func New(o Options) *http.Client {
	o.defaults()
	dialer := &net.Dialer{
		Timeout: o.DialTimeout,
		// Control runs after DNS resolution, on the address actually dialled.
		Control: func(network, address string, _ syscall.RawConn) error {
			return checkAddress(address, o)
		},
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would hide the real destination from the check
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   o.DialTimeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConns:          50,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Timeout:   o.Timeout,
		Transport: &limitTransport{rt: tr, max: o.MaxBody},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > o.MaxRedirects {
				return fmt.Errorf("%w: too many redirects", ErrRedirect)
			}
			if req.URL.Host != via[0].URL.Host {
				return fmt.Errorf("%w: %s", ErrRedirect, req.URL.Host)
			}
			if req.URL.Scheme != via[0].URL.Scheme && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: scheme downgrade", ErrRedirect)
			}
			return nil
		},
	}
}

// checkAddress refuses an address outside the public internet.
func checkAddress(address string, o Options) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
	}
	if Allowed(ip, o.AllowLoopback, o.AllowPrivate) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrForbiddenAddress, ip)
}

// nonPublic are ranges besides those netip classifies itself.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this" network
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 (may embed private v4)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// Allowed reports whether ip may be dialled.
func Allowed(ip netip.Addr, allowLoopback, allowPrivate bool) bool {
	if allowPrivate {
		return true
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return allowLoopback
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// limitTransport caps response bodies.
type limitTransport struct {
	rt  http.RoundTripper
	max int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, resp.ContentLength)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// Do sends req with c under ctx and drains and closes the body, returning
// the status and up to limit bytes of it (for logs). It is what
// fire-and-forget callers (back-channel logout) use.
func Do(ctx context.Context, c *http.Client, req *http.Request, limit int64) (int, []byte, error) {
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}
