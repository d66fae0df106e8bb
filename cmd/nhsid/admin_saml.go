package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/spf13/cobra"
)

// samlCommand is `nhsid admin saml`: register SAML service providers from
// their metadata, list and show them, and change their settings.
func samlCommand(client clientFunc) *cobra.Command {
	cmd := &cobra.Command{Use: "saml", Short: "SAML service providers"}
	read := func(cmd *cobra.Command, name string, limit int64) ([]byte, error) {
		if name == "-" {
			return io.ReadAll(io.LimitReader(cmd.InOrStdin(), limit))
		}
		return os.ReadFile(name)
	}
	cmd.AddCommand(
		&cobra.Command{Use: "add FILE", Short: "Register an SP from its metadata XML (FILE or - for stdin)", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, a []string) error {
				c, err := client(cmd)
				if err != nil {
					return err
				}
				raw, err := read(cmd, a[0], 256<<10)
				if err != nil {
					return usageErr(err)
				}
				return c.doRaw(http.MethodPost, "/admin/v1/saml/providers", "application/samlmetadata+xml", raw)
			}},
		&cobra.Command{Use: "list", Short: "List SPs", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(http.MethodGet, "/admin/v1/saml/providers", nil)
		}},
		&cobra.Command{Use: "get ID", Short: "Show an SP with its metadata", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(http.MethodGet, "/admin/v1/saml/providers/"+url.PathEscape(a[0]), nil)
		}},
		&cobra.Command{Use: "set ID FILE", Short: "Change an SP's settings from JSON (min_aal, sign, select_role, allowed_roles, attributes)", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, a []string) error {
				c, err := client(cmd)
				if err != nil {
					return err
				}
				raw, err := read(cmd, a[1], 64<<10)
				if err != nil {
					return usageErr(err)
				}
				if !json.Valid(raw) {
					return usageErr(errors.New("settings are not valid JSON"))
				}
				return c.do(http.MethodPatch, "/admin/v1/saml/providers/"+url.PathEscape(a[0]), json.RawMessage(raw))
			}},
	)
	return cmd
}
