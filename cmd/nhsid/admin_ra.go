package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// clientFunc builds the admin API client for a command.
type clientFunc func(cmd *cobra.Command) (*adminClient, error)

// raCommands are the RBAC subcommands of `nhsid admin`: roles (catalogue
// import and listing) and positions (assign, end, approve, list).
func raCommands(client clientFunc) []*cobra.Command {
	roles := &cobra.Command{Use: "roles", Short: "The national RBAC role catalogue"}
	roles.AddCommand(&cobra.Command{Use: "import FILE", Short: "Import catalogue entries from a JSON or CSV file (- for stdin, JSON)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			var raw []byte
			if a[0] == "-" {
				raw, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 8<<20))
			} else {
				raw, err = os.ReadFile(a[0])
			}
			if err != nil {
				return usageErr(err)
			}
			ct := "application/json"
			if strings.EqualFold(filepath.Ext(a[0]), ".csv") {
				ct = "text/csv"
			}
			return c.doRaw(http.MethodPost, "/admin/v1/roles", ct, raw)
		}},
		&cobra.Command{Use: "list", Short: "Show the catalogue", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(http.MethodGet, "/admin/v1/roles", nil)
		}})

	positions := &cobra.Command{Use: "positions", Short: "Positions (person × organisation × job role)"}
	var org, role, start, end string
	var activities []string
	assign := &cobra.Command{Use: "assign UID", Short: "Assign a position to a person", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			body := map[string]any{"org_code": org, "role_code": role, "activity_codes": activities, "start": start, "end": end}
			return c.do(http.MethodPost, "/admin/v1/people/"+url.PathEscape(a[0])+"/positions", body)
		}}
	assign.Flags().StringVar(&org, "org", "", "ODS code of the organisation")
	assign.Flags().StringVar(&role, "role", "", "job role code S…:G…:R…")
	assign.Flags().StringSliceVar(&activities, "activity", nil, "activity code (repeatable; default: the role's baseline)")
	assign.Flags().StringVar(&start, "start", "", "start date YYYY-MM-DD (default: now)")
	assign.Flags().StringVar(&end, "end", "", "last day YYYY-MM-DD (default: open-ended)")
	simple := func(use, short, method string, path func(string) string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(method, path(url.PathEscape(a[0])), nil)
		}}
	}
	positions.AddCommand(assign,
		simple("end PERSON_ROLEID", "End a position (history is kept)", http.MethodDelete, func(id string) string { return "/admin/v1/positions/" + id }),
		simple("approve PERSON_ROLEID", "Approve a pending RA Manager position (two-person rule)", http.MethodPost, func(id string) string { return "/admin/v1/positions/" + id + "/approve" }),
		simple("list UID", "List a person's positions", http.MethodGet, func(uid string) string { return "/admin/v1/people/" + uid + "/positions" }))
	return []*cobra.Command{roles, positions}
}

// peopleRACommands are the RA subcommands of `nhsid admin people`.
func peopleRACommands(client clientFunc) []*cobra.Command {
	var evidence []string
	var on string
	var level int
	verify := &cobra.Command{Use: "verify UID", Short: "Record an identity check (sets the identity assurance level)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(http.MethodPost, "/admin/v1/people/"+url.PathEscape(a[0])+"/verification",
				map[string]any{"evidence": evidence, "verified_on": on, "level": level})
		}}
	verify.Flags().StringSliceVar(&evidence, "evidence", nil, "evidence seen: passport, driving_licence, utility_bill, … (repeatable)")
	verify.Flags().StringVar(&on, "date", "", "date of the check YYYY-MM-DD (default: today)")
	verify.Flags().IntVar(&level, "level", 3, "identity assurance level it establishes (1-3)")
	closeCmd := &cobra.Command{Use: "close UID", Short: "Close an account: end its positions, sessions and tokens", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(http.MethodPost, "/admin/v1/people/"+url.PathEscape(a[0])+"/close", nil)
		}}
	revoke := &cobra.Command{Use: "revoke-credential UID CREDENTIAL_ID", Short: "Revoke a lost security key", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			return c.do(http.MethodDelete, "/admin/v1/people/"+url.PathEscape(a[0])+"/credentials/"+url.PathEscape(a[1]), nil)
		}}
	return []*cobra.Command{verify, closeCmd, revoke}
}

// doRaw sends body as is with contentType and prints the reply.
func (c *adminClient) doRaw(method, path, contentType string, body []byte) error {
	req, err := http.NewRequest(method, c.server+path, bytes.NewReader(body))
	if err != nil {
		return usageErr(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", contentType)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API unreachable at %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") == nil {
		raw = append(pretty.Bytes(), '\n')
	}
	if resp.StatusCode >= 400 {
		os.Stderr.Write(raw)
		return fmt.Errorf("admin API answered %s", resp.Status)
	}
	_, err = c.out.Write(raw)
	return err
}
