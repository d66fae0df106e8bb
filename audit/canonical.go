package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"time"
)

// canonicalVersion prefixes every canonical record, so the encoding can
// change later without ambiguity.
const canonicalVersion = "nhsid-audit-record-v1"

// HashSize is the size of a chain hash (SHA-256).
const HashSize = sha256.Size

// Canonical returns the bytes of e that the chain hashes: a version tag,
// then each field in a fixed order, each prefixed by its length as a 4-byte
// big-endian integer. The time is RFC 3339 in UTC at microsecond precision
// (what PostgreSQL keeps); Detail is its canonical JSON (RawDetail when set).
func Canonical(e *Event) []byte {
	raw := e.RawDetail
	if raw == nil && len(e.Detail) > 0 {
		raw, _ = marshalCanonical(e.Detail)
	}
	fields := [][]byte{
		[]byte(canonicalVersion),
		[]byte(strconv.FormatInt(e.Seq, 10)),
		[]byte(e.Time.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z")),
		[]byte(e.Type),
		[]byte(e.Outcome),
		[]byte(e.Actor),
		[]byte(e.Subject),
		[]byte(e.Client),
		[]byte(e.Org),
		[]byte(e.RoleID),
		[]byte(e.SessionHash),
		[]byte(e.RequestID),
		[]byte(e.IP),
		[]byte(e.UserAgent),
		raw,
	}
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// GenesisHash is the "previous hash" of the first sealed record.
var GenesisHash = make([]byte, HashSize)

// NextHash returns SHA-256(prev || Canonical(e)): the chain link for e.
func NextHash(prev []byte, e *Event) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(Canonical(e))
	return h.Sum(nil)
}
