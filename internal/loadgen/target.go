package loadgen

import (
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
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		// A name other than localhost could resolve anywhere.
		if ips, lerr := net.LookupIP(host); lerr == nil && len(ips) > 0 {
			for _, a := range ips {
				if !a.IsLoopback() {
					return fmt.Errorf("loadgen: target %q resolves to non-loopback %s", raw, a)
				}
			}
			return nil
		}
		return fmt.Errorf("loadgen: target %q is not a loopback address", raw)
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("loadgen: target %q is not a loopback address", raw)
	}
	return nil
}
