package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store/postgres"
)

// auditCmd is `nhsid audit verify|export|checkpoints|archive|purge|follow`, run
// by auditors and operators against the database (read-only, except verify
// --seal and purge).
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
			// Records committed but not yet chained are not covered by
			// this check (the sealer chains them within seconds).
			if h, err := s.AuditHead(cmd.Context()); err == nil {
				out["unsealed"] = h.Unsealed
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
	cmd.AddCommand(verify, export, checkpoints, archiveCmd(open), purgeCmd(open), followCmd(open))
	return cmd
}

// retentionCut is --before, else now minus audit.retention.
func retentionCut(cmd *cobra.Command, before string) (time.Time, error) {
	if before != "" {
		t, err := time.Parse(time.RFC3339Nano, before)
		if err != nil {
			return time.Time{}, usageErr(fmt.Errorf("--before: %w", err))
		}
		return t, nil
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return time.Time{}, err
	}
	if cfg.Audit.Retention <= 0 {
		return time.Time{}, usageErr(errors.New("--before is required (audit.retention is 0: keep for ever)"))
	}
	return time.Now().Add(-cfg.Audit.Retention).UTC().Truncate(time.Second), nil
}

// archiveCmd is `nhsid audit archive --before T --out FILE`.
func archiveCmd(open func(*cobra.Command) (*postgres.Store, func(), error)) *cobra.Command {
	var before, out string
	c := &cobra.Command{
		Use:   "archive",
		Short: "Write the sealed records older than --before, with their hashes and the boundary, to --out",
		Long: `Write, as JSON Lines, every sealed record older than --before (default: now
minus audit.retention) from the start of the stored chain, each with its
position and chain hash, then a trailer with the anchor and the boundary (last
archived position and hash). The chain head is never archived. The file is
created, never overwritten. Keep it where the database cannot write; then run
"nhsid audit purge" with the same --before and the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErr(errors.New("--out is required"))
			}
			cut, err := retentionCut(cmd, before)
			if err != nil {
				return err
			}
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return usageErr(err)
			}
			tr, err := audit.Archive(cmd.Context(), s, cut, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				_ = os.Remove(out)
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"before": cut.UTC().Format(time.RFC3339Nano), "count": tr.Count,
				"boundary_pos": tr.Boundary.Pos, "boundary_hash": fmt.Sprintf("%x", tr.Boundary.Hash), "file": out})
		},
	}
	c.Flags().StringVar(&before, "before", "", "RFC 3339 cut: archive records older than this (default: now minus audit.retention)")
	c.Flags().StringVar(&out, "out", "", "archive file to create")
	return c
}

// purgeCmd is `nhsid audit purge --before T --archive FILE`.
func purgeCmd(open func(*cobra.Command) (*postgres.Store, func(), error)) *cobra.Command {
	var before, file, actor string
	c := &cobra.Command{
		Use:   "purge",
		Short: "Delete the records held in an archive file (run as the retention role)",
		Long: `Delete the audit records held in --archive (written by "nhsid audit archive"
with the same --before). The file is checked first: its links must chain to its
boundary, and every archived position must still be in the database with the
same hash; otherwise nothing is deleted. The deletion is recorded as a
retention.deleted event and the boundary is stored, so "nhsid audit verify"
then starts from the first remaining record, anchored on the boundary hash.
Connect (--database-url) as a role granted by nhsid_grant_retention_role: the
serving role cannot delete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || before == "" {
				return usageErr(errors.New("--archive and --before are required"))
			}
			cut, err := retentionCut(cmd, before)
			if err != nil {
				return err
			}
			f, err := os.Open(file)
			if err != nil {
				return usageErr(err)
			}
			defer f.Close()
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			n, err := audit.Purge(cmd.Context(), s, f, cut, actor, nil)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"deleted": n})
		},
	}
	c.Flags().StringVar(&before, "before", "", "RFC 3339 cut the archive was written with")
	c.Flags().StringVar(&file, "archive", "", "archive file written by nhsid audit archive")
	c.Flags().StringVar(&actor, "actor", "operator:retention", "actor recorded in the retention.deleted event")
	return c
}

// followCmd is `nhsid audit follow`: the SIEM feed.
func followCmd(open func(*cobra.Command) (*postgres.Store, func(), error)) *cobra.Command {
	var from int64
	var stateFile string
	var interval time.Duration
	c := &cobra.Command{
		Use:   "follow",
		Short: "Stream sealed records as JSON Lines as they are sealed, for a SIEM",
		Long: `Stream the audit trail as JSON Lines, in hash-chain order, and keep streaming
new records as they are sealed, until interrupted. Each line is the record
with its chain_pos and chain_hash. Pipe it to a log shipper (Fluent Bit,
Vector, Filebeat) to forward it to a SIEM. With --state-file the position
is saved after each batch and a restart resumes there; delivery is at least
once (drop repeated chain_pos).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond || interval > time.Hour {
				return usageErr(errors.New("--interval must be between 100ms and 1h"))
			}
			opts := audit.FollowOptions{From: from, Interval: interval}
			if stateFile != "" {
				raw, err := os.ReadFile(stateFile)
				switch {
				case err == nil && !cmd.Flags().Changed("from"):
					n, perr := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
					if perr != nil || n < 1 {
						return usageErr(fmt.Errorf("--state-file %s does not hold a chain position", stateFile))
					}
					opts.From = n
				case err != nil && !errors.Is(err, os.ErrNotExist):
					return usageErr(fmt.Errorf("--state-file: %w", err))
				}
				opts.Saved = func(next int64) error { return writeFileAtomic(stateFile, []byte(strconv.FormatInt(next, 10)+"\n")) }
			}
			s, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = audit.Follow(ctx, s, cmd.OutOrStdout(), opts)
			return err
		},
	}
	c.Flags().Int64Var(&from, "from", 1, "first chain position (overrides --state-file)")
	c.Flags().StringVar(&stateFile, "state-file", "", "file that keeps the next position across restarts")
	c.Flags().DurationVar(&interval, "interval", 2*time.Second, "wait between looks for new records")
	return c
}

// writeFileAtomic replaces name with data (a temporary file renamed over it).
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), name)
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
