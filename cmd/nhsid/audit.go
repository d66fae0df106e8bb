package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store/postgres"
)

// auditCmd is `nhsid audit verify|export|checkpoints`, run by auditors and
// operators against the database (read-only, except verify --seal).
func auditCmd() *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the audit trail",
		Long: `Verify and export the audit trail. The URL comes from --database-url, then
NHSID_DATABASE_URL / database.url.`,
	}
	cmd.PersistentFlags().StringVar(&dbURL, "database-url", "", "PostgreSQL URL")
	open := func(cmd *cobra.Command) (*postgres.Store, func(), error) {
		u := dbURL
		if u == "" {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return nil, nil, err
			}
			u = cfg.Database.URL
		}
		if u == "" {
			return nil, nil, usageErr(errors.New("no database URL: pass --database-url or set NHSID_DATABASE_URL"))
		}
		pool, err := pgxpool.New(cmd.Context(), u)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("database url: %w", err))
		}
		return postgres.New(pool), pool.Close, nil
	}

	var from, to int64
	var cpFile, pubKey string
	var seal bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain (whole or --from/--to) and report the first broken link",
		Long: `Check the hash chain, or the positions --from..--to, and report the first
broken link as JSON. With --checkpoints FILE (written by "nhsid audit
checkpoints"), also check every checkpoint's signature and that the chain still
has the signed hash at its position: this catches a rewrite that re-hashed the
chain. The public key comes from --public-key, else from ` + audit.EnvSigningKey + `.
Exit status 1 when the chain is broken.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			o := audit.VerifyOptions{From: from, To: to}
			if cpFile != "" {
				f, err := os.Open(cpFile)
				if err != nil {
					return usageErr(err)
				}
				o.Checkpoints, err = audit.ReadCheckpoints(f)
				f.Close()
				if err != nil {
					return usageErr(err)
				}
				o.PublicKey, err = verifyKey(pubKey)
				if err != nil {
					return usageErr(err)
				}
			}
			if seal {
				ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
				_, err := (&audit.Sealer{Store: s}).Flush(ctx)
				cancel()
				if err != nil {
					return err
				}
			}
			rep, err := audit.Verify(cmd.Context(), s, o)
			if err != nil {
				return err
			}
			out := map[string]any{"from": rep.From, "to": rep.To, "checked": rep.Checked,
				"checkpoints": rep.Checkpoints, "ok": rep.Broken == nil}
			if rep.Broken != nil {
				out["broken"] = rep.Broken
			} else {
				out["head"] = fmt.Sprintf("%x", rep.Head)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				return err
			}
			if rep.Broken != nil {
				return &exitError{code: 1, err: rep.Broken}
			}
			return nil
		},
	}
	verify.Flags().Int64Var(&from, "from", 0, "first chain position to check (default 1)")
	verify.Flags().Int64Var(&to, "to", 0, "last chain position to check (default: the head)")
	verify.Flags().StringVar(&cpFile, "checkpoints", "", "JSON Lines file of exported signed checkpoints")
	verify.Flags().StringVar(&pubKey, "public-key", "", "base64 Ed25519 public key of the audit signing key")
	verify.Flags().BoolVar(&seal, "seal", false, "seal every committed record before verifying")

	var since, until, format, person, org, client string
	export := &cobra.Command{
		Use:   "export",
		Short: "Stream events as JSON Lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "jsonl" {
				return usageErr(fmt.Errorf("--format %q: only jsonl is supported", format))
			}
			q := audit.Query{Person: person, Org: org, Client: client}
			for _, f := range []struct {
				name, v string
				dst     *time.Time
			}{{"since", since, &q.Since}, {"until", until, &q.Until}} {
				if f.v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, f.v)
				if err != nil {
					return usageErr(fmt.Errorf("--%s: %w", f.name, err))
				}
				*f.dst = t
			}
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			_, err = audit.ExportJSONL(cmd.Context(), s, q, cmd.OutOrStdout())
			return err
		},
	}
	export.Flags().StringVar(&since, "since", "", "RFC 3339 time (inclusive)")
	export.Flags().StringVar(&until, "until", "", "RFC 3339 time (exclusive)")
	export.Flags().StringVar(&format, "format", "jsonl", "output format (jsonl)")
	export.Flags().StringVar(&person, "person", "", "only events of this person (subject or actor)")
	export.Flags().StringVar(&org, "org", "", "only events in this organisation")
	export.Flags().StringVar(&client, "client", "", "only events of this client or SP")

	checkpoints := &cobra.Command{
		Use:   "checkpoints",
		Short: "Write every signed checkpoint as JSON Lines (keep the file off the database)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			_, err = audit.ExportCheckpoints(cmd.Context(), s, cmd.OutOrStdout())
			return err
		},
	}
	cmd.AddCommand(verify, export, checkpoints)
	return cmd
}

// verifyKey is the checkpoint public key: the flag, else the signing key
// in the environment.
func verifyKey(flag string) (ed25519.PublicKey, error) {
	if flag != "" {
		return audit.ParsePublicKey(flag)
	}
	if v := os.Getenv(audit.EnvSigningKey); v != "" {
		k, err := audit.ParseSigningKey(v)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	return nil, errors.New("--checkpoints needs --public-key or " + audit.EnvSigningKey)
}
