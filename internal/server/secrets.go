package server

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nhsid/nhsid/internal/config"
)

type secretSet struct{ global, pepper, kek []byte }

// loadSecrets decodes the configured secrets. In dev, missing ones are
// random for this process (tokens and keys do not survive a restart).
func loadSecrets(c config.Secrets, dev bool) (secretSet, error) {
	get := func(name, val, file string) ([]byte, error) {
		if val == "" && file == "" {
			if !dev {
				return nil, fmt.Errorf("%s is required", name)
			}
			b := make([]byte, 32)
			_, err := rand.Read(b)
			return b, err
		}
		b, err := config.Secret(val, file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	}
	var s secretSet
	var err error
	if s.global, err = get("secrets.global_secret", c.GlobalSecret, c.GlobalSecretFile); err != nil {
		return s, err
	}
	if s.pepper, err = get("secrets.client_secret_pepper", c.ClientSecretPepper, c.ClientSecretPepperFile); err != nil {
		return s, err
	}
	if s.kek, err = get("secrets.key_encryption_key", c.KeyEncryptionKey, c.KeyEncryptionKeyFile); err != nil {
		return s, err
	}
	// AES-256-GCM wants exactly 32 bytes.
	if len(s.kek) > 32 {
		s.kek = s.kek[:32]
	}
	return s, nil
}

// certReloader serves the TLS certificate from files, reloading them when
// they change (checked at most every 10 s).
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	mu                sync.Mutex
	cert              *tls.Certificate
	mod               time.Time
	checked           time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	st, err := os.Stat(c.certFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.cert, c.mod = &cert, st.ModTime()
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) > 10*time.Second {
		c.checked = time.Now()
		if st, err := os.Stat(c.certFile); err == nil && st.ModTime().After(c.mod) {
			if err := c.load(); err != nil {
				c.log.Error("tls certificate reload failed; keeping the old one", "err", err.Error())
			} else {
				c.log.Info("tls certificate reloaded")
			}
		}
	}
	return c.cert, nil
}
