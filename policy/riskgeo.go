package policy

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// GeoTable is a GeoIP lookup built from a small local table of networks:
// the most specific prefix containing an address wins. It never calls out.
type GeoTable struct {
	entries []geoEntry // most specific first
}

type geoEntry struct {
	prefix netip.Prefix
	loc    Location
}

// NewGeoTable builds a table from prefixes and their locations.
func NewGeoTable(m map[netip.Prefix]Location) *GeoTable {
	t := &GeoTable{}
	for p, l := range m {
		t.entries = append(t.entries, geoEntry{p.Masked(), l})
	}
	sort.Slice(t.entries, func(i, j int) bool { return t.entries[i].prefix.Bits() > t.entries[j].prefix.Bits() })
	return t
}

// Lookup implements GeoIP.
func (t *GeoTable) Lookup(ip netip.Addr) (Location, bool) {
	ip = ip.Unmap()
	for _, e := range t.entries {
		if e.prefix.Contains(ip) {
			return e.loc, true
		}
	}
	return Location{}, false
}

// ParseGeoCSV reads lines "cidr,country,city,lat,lon" (a header line
// starting with "cidr" and lines starting with '#' are skipped).
func ParseGeoCSV(r io.Reader) (*GeoTable, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = 5
	cr.TrimLeadingSpace = true
	m := map[netip.Prefix]Location{}
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("geoip: %w", err)
		}
		if line == 1 && strings.EqualFold(rec[0], "cidr") {
			continue
		}
		p, err := netip.ParsePrefix(rec[0])
		if err != nil {
			return nil, fmt.Errorf("geoip line %d: %w", line, err)
		}
		lat, err1 := strconv.ParseFloat(rec[3], 64)
		lon, err2 := strconv.ParseFloat(rec[4], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("geoip line %d: bad coordinates", line)
		}
		m[p] = Location{Country: rec[1], City: rec[2], Lat: lat, Lon: lon}
	}
	return NewGeoTable(m), nil
}
