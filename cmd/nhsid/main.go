// Command nhsid is the one nhsid binary: `serve` runs the identity provider,
// `migrate` manages the PostgreSQL schema, `admin` is a thin client of the
// admin API, and `version` prints the build. All wiring happens in
// internal/server.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// exitError carries a process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks a problem with the invocation or configuration (exit 2).
func usageErr(err error) error { return &exitError{code: 2, err: err} }

func main() {
	root := &cobra.Command{
		Use:           "nhsid",
		Short:         "nhsid: single sign-on and federation for health and care staff",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", os.Getenv("NHSID_CONFIG"), "path of the YAML config file (env NHSID_CONFIG)")
	root.AddCommand(serveCmd(), migrateCmd(), versionCmd(), adminCmd(), keysCmd(), auditCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "nhsid:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		var pe *config.Problems
		if errors.As(err, &pe) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "nhsid", version)
		},
	}
}

// loadConfig reads --config and the named environment knobs.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	cfg, err := config.Load(path)
	if err != nil {
		return cfg, usageErr(err)
	}
	return cfg, nil
}
