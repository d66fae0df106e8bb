package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Checkpoint is a signed statement "the chain had hash Hash at position
// Pos". Exported off the database (ExportCheckpoints), it catches a
// database superuser who rewrites records and re-hashes the chain: the
// recomputed hash at Pos no longer matches, and they cannot re-sign.
type Checkpoint struct {
	Pos       int64     `json:"pos"`
	Hash      []byte    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

// KeyID names an Ed25519 public key: hex of the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

func checkpointMessage(pos int64, hash []byte, t time.Time) []byte {
	var b bytes.Buffer
	b.WriteString("nhsid-audit-checkpoint-v1\x00")
	_ = binary.Write(&b, binary.BigEndian, pos)
	b.Write(hash)
	b.WriteString(t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano))
	return b.Bytes()
}

// SignCheckpoint signs the chain head h at time t.
func SignCheckpoint(key ed25519.PrivateKey, h Head, t time.Time) Checkpoint {
	t = t.UTC().Truncate(time.Microsecond)
	pub := key.Public().(ed25519.PublicKey)
	return Checkpoint{
		Pos: h.Pos, Hash: append([]byte(nil), h.Hash...), Time: t, KeyID: KeyID(pub),
		Signature: ed25519.Sign(key, checkpointMessage(h.Pos, h.Hash, t)),
	}
}

// ErrBadSignature means a checkpoint's signature does not verify.
var ErrBadSignature = errors.New("checkpoint signature invalid")

// VerifyCheckpoint checks c's signature with pub.
func VerifyCheckpoint(pub ed25519.PublicKey, c Checkpoint) error {
	if c.KeyID != KeyID(pub) {
		return fmt.Errorf("%w: checkpoint at %d signed by key %s, want %s", ErrBadSignature, c.Pos, c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, checkpointMessage(c.Pos, c.Hash, c.Time), c.Signature) {
		return fmt.Errorf("%w: checkpoint at %d", ErrBadSignature, c.Pos)
	}
	return nil
}

// WriteCheckpoints writes cps as JSON Lines.
func WriteCheckpoints(w io.Writer, cps []Checkpoint) error {
	enc := json.NewEncoder(w)
	for _, c := range cps {
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("write checkpoint: %w", err)
		}
	}
	return nil
}

// ReadCheckpoints reads JSON Lines written by WriteCheckpoints.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	dec := json.NewDecoder(r)
	var out []Checkpoint
	for {
		var c Checkpoint
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		out = append(out, c)
	}
}

// EnvSigningKey names the environment variable holding the audit
// checkpoint key: a base64 Ed25519 seed (32 bytes) or private key (64).
const EnvSigningKey = "NHSID_AUDIT_SIGNING_KEY"

// ParseSigningKey decodes a base64 Ed25519 seed or private key.
func ParseSigningKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	}
	return nil, fmt.Errorf("audit signing key: %d bytes, want %d or %d", len(b), ed25519.SeedSize, ed25519.PrivateKeySize)
}

// SigningKeyFromEnv returns the key in EnvSigningKey, or (when it is unset
// and dev is true) a fresh ephemeral key; ephemeral reports which.
func SigningKeyFromEnv(dev bool) (key ed25519.PrivateKey, ephemeral bool, err error) {
	if v := os.Getenv(EnvSigningKey); v != "" {
		k, err := ParseSigningKey(v)
		return k, false, err
	}
	if !dev {
		return nil, false, fmt.Errorf("audit: %s is not set", EnvSigningKey)
	}
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, false, fmt.Errorf("audit: generate key: %w", err)
	}
	return k, true, nil
}

// ParsePublicKey decodes a base64 Ed25519 public key, or derives it from a
// private key or seed.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("audit public key: %w", err)
	}
	if len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	k, err := ParseSigningKey(s)
	if err != nil {
		return nil, err
	}
	return k.Public().(ed25519.PublicKey), nil
}
