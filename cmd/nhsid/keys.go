package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/server"
)

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage token-signing keys (against the configured database)",
		Long: `Manage token-signing keys in the configured database. Every replica picks up
a change within keys.reload_interval (1 m by default). A rotated-in key is published in JWKS for
keys.prepublish (1 h) before it signs; the key it replaces stays published until
every token it signed has expired.`,
	}
	open := func(cmd *cobra.Command) (*server.Server, error) {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return nil, err
		}
		if err := cfg.Validate(false); err != nil {
			return nil, usageErr(err)
		}
		log := slog.New(slog.NewJSONHandler(io.Discard, nil))
		return server.New(cmd.Context(), server.Options{Config: cfg, Log: log})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Publish a new signing key for every algorithm; it signs after the pre-publication delay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.IDP.RotateKeys(cmd.Context()); err != nil {
				return err
			}
			return printKeys(cmd.Context(), cmd.OutOrStdout(), s)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List signing keys and their lifecycle (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			return printKeys(cmd.Context(), cmd.OutOrStdout(), s)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke KID",
		Short: "Emergency: revoke a signing key now (it leaves JWKS; tokens it signed stop validating)",
		Long: `Revoke a compromised signing key at once. It leaves JWKS immediately on this
process and on every replica at its next key reload (keys.reload_interval), and
tokens it signed stop validating at introspection and userinfo. If it was
signing, a successor signs immediately without pre-publication. This is the
operator's emergency path: it needs no second approval and is audited as such.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			actor := "operator:cli"
			if u := os.Getenv("USER"); u != "" {
				actor = "operator:cli:" + u
			}
			if _, err := s.IDP.RevokeKey(cmd.Context(), args[0], actor); err != nil {
				if errors.Is(err, idp.ErrKeyNotFound) {
					return usageErr(err)
				}
				return err
			}
			return printKeys(cmd.Context(), cmd.OutOrStdout(), s)
		},
	})
	return cmd
}

type keyView struct {
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	CreatedAt time.Time  `json:"created_at"`
	ActiveAt  time.Time  `json:"active_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func printKeys(ctx context.Context, w io.Writer, s *server.Server) error {
	keys, err := s.Store.ListKeys(ctx)
	if err != nil {
		return err
	}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyView{KID: k.KID, Alg: k.Alg, CreatedAt: k.CreatedAt, ActiveAt: k.ActiveAt,
			RetiredAt: opt(k.RetiredAt), ExpiresAt: opt(k.ExpiresAt), RevokedAt: opt(k.RevokedAt)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
