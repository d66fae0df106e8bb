package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/migrations"
)

func migrateCmd() *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Manage the PostgreSQL schema",
		Long: `Manage the PostgreSQL schema. The URL comes from --database-url, then
NHSID_MIGRATE_DATABASE_URL / database.migrate_url, then NHSID_DATABASE_URL /
database.url. Run it as the schema owner, not as the serving role.`,
	}
	cmd.PersistentFlags().StringVar(&dbURL, "database-url", "", "PostgreSQL URL with DDL rights")
	resolve := func(cmd *cobra.Command) (string, error) {
		if dbURL != "" {
			return dbURL, nil
		}
		cfg, err := loadConfig(cmd)
		if err != nil {
			return "", err
		}
		if cfg.Database.MigrateURL != "" {
			return cfg.Database.MigrateURL, nil
		}
		if cfg.Database.URL != "" {
			return cfg.Database.URL, nil
		}
		return "", usageErr(errors.New("no database URL: pass --database-url or set NHSID_MIGRATE_DATABASE_URL / NHSID_DATABASE_URL"))
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration (safe to run from several replicas at once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := resolve(cmd)
			if err != nil {
				return err
			}
			if err := migrations.Up(cmd.Context(), u); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "migrations: up to date")
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "List migrations and whether each is applied (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := resolve(cmd)
			if err != nil {
				return err
			}
			st, err := migrations.Status(cmd.Context(), u)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		},
	})
	return cmd
}
