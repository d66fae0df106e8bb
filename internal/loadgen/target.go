package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Bounds every run respects, whatever the caller asks for.
const (
	MaxConcurrency = 1024
	MaxDuration    = 10 * time.Minute
	MaxRate        = 50000
	MaxUsers       = 20000
)

// CheckLoopback refuses any URL whose host is not a loopback address or
// "localhost": the load generator must never load a shared or remote
// system.
func CheckLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("loadgen: target %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("loadgen: target %q: scheme must be http or https", raw)
	}
	if err := checkLoopbackHost(u.Hostname()); err != nil {
		return fmt.Errorf("loadgen: target %q %w", raw, err)
	}
	return nil
}

// checkLoopbackHost refuses a host that is not "localhost" (or a
// *.localhost name), a loopback address, or a name that resolves only to
// loopback addresses: a name other than localhost could resolve anywhere.
func checkLoopbackHost(host string) error {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.IsLoopback() {
			return errors.New("is not a loopback address")
		}
		return nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return errors.New("is not a loopback address")
	}
	for _, a := range ips {
		if !a.IsLoopback() {
			return fmt.Errorf("resolves to non-loopback %s", a)
		}
	}
	return nil
}
