package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// adminClient is the thin HTTP client behind `nhsid admin`.
type adminClient struct {
	server string
	token  string
	out    io.Writer
	http   *http.Client
}

func adminCmd() *cobra.Command {
	var server, tokenFile string
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Call the admin API (JSON output)",
		Long: `Call the admin API. The bearer token comes from NHSID_TOKEN or --token-file;
it is never taken on the command line. Output is the API's JSON.`,
	}
	cmd.PersistentFlags().StringVar(&server, "server", "http://127.0.0.1:8081", "admin listener base URL")
	cmd.PersistentFlags().StringVar(&tokenFile, "token-file", "", "file holding the bearer token (default: env NHSID_TOKEN)")
	client := func(cmd *cobra.Command) (*adminClient, error) {
		tok := os.Getenv("NHSID_TOKEN")
		if tokenFile != "" {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return nil, usageErr(fmt.Errorf("token file: %w", err))
			}
			tok = strings.TrimSpace(string(b))
		}
		if tok == "" {
			return nil, usageErr(errors.New("no admin token: set NHSID_TOKEN or pass --token-file"))
		}
		return &adminClient{server: strings.TrimRight(server, "/"), token: tok, out: cmd.OutOrStdout(), http: &http.Client{Timeout: 30 * time.Second}}, nil
	}
	run := func(method string, path func(args []string) string, body func(cmd *cobra.Command, args []string) (any, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := client(cmd)
			if err != nil {
				return err
			}
			var b any
			if body != nil {
				if b, err = body(cmd, args); err != nil {
					return err
				}
			}
			return c.do(method, path(args), b)
		}
	}
	fixed := func(p string) func([]string) string { return func([]string) string { return p } }

	orgs := &cobra.Command{Use: "orgs", Short: "Organisations"}
	var code, name, parent string
	orgCreate := &cobra.Command{Use: "create", Short: "Create an organisation", Args: cobra.NoArgs,
		RunE: run(http.MethodPost, fixed("/admin/v1/organisations"), func(*cobra.Command, []string) (any, error) {
			return map[string]string{"code": code, "name": name, "parent_code": parent}, nil
		})}
	orgCreate.Flags().StringVar(&code, "code", "", "ODS code")
	orgCreate.Flags().StringVar(&name, "name", "", "name")
	orgCreate.Flags().StringVar(&parent, "parent", "", "parent ODS code")
	orgs.AddCommand(orgCreate,
		&cobra.Command{Use: "list", Short: "List organisations", Args: cobra.NoArgs, RunE: run(http.MethodGet, fixed("/admin/v1/organisations"), nil)},
		&cobra.Command{Use: "get CODE", Short: "Show an organisation", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodGet, func(a []string) string { return "/admin/v1/organisations/" + url.PathEscape(a[0]) }, nil)})

	people := &cobra.Command{Use: "people", Short: "People"}
	var given, family, email, title string
	var ial int
	personCreate := &cobra.Command{Use: "create", Short: "Create a person", Args: cobra.NoArgs,
		RunE: run(http.MethodPost, fixed("/admin/v1/people"), func(*cobra.Command, []string) (any, error) {
			return map[string]any{"title": title, "given_name": given, "family_name": family, "email": email, "id_assurance_level": ial}, nil
		})}
	personCreate.Flags().StringVar(&title, "title", "", "title (Dr, Mr, …)")
	personCreate.Flags().StringVar(&given, "given-name", "", "given name")
	personCreate.Flags().StringVar(&family, "family-name", "", "family name")
	personCreate.Flags().StringVar(&email, "email", "", "email")
	personCreate.Flags().IntVar(&ial, "id-assurance-level", 0, "identity assurance level 0-3")
	people.AddCommand(personCreate,
		&cobra.Command{Use: "list", Short: "List people", Args: cobra.NoArgs, RunE: run(http.MethodGet, fixed("/admin/v1/people"), nil)},
		&cobra.Command{Use: "search TEXT", Short: "Find people by the start of a name or email address", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodGet, func(a []string) string { return "/admin/v1/people?" + url.Values{"q": {a[0]}}.Encode() }, nil)},
		&cobra.Command{Use: "get UID", Short: "Show a person", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodGet, func(a []string) string { return "/admin/v1/people/" + url.PathEscape(a[0]) }, nil)})

	invites := &cobra.Command{Use: "invites", Short: "Enrolment invites"}
	invites.AddCommand(&cobra.Command{Use: "create UID", Short: "Issue a single-use enrolment link", Args: cobra.ExactArgs(1),
		RunE: run(http.MethodPost, func(a []string) string { return "/admin/v1/people/" + url.PathEscape(a[0]) + "/invites" }, nil)})

	clients := &cobra.Command{Use: "clients", Short: "Relying parties (OIDC clients)"}
	// metadata reads client metadata JSON from the file named by args[i] (- for stdin).
	metadata := func(i int) func(cmd *cobra.Command, a []string) (any, error) {
		return func(cmd *cobra.Command, a []string) (any, error) {
			var raw []byte
			var err error
			if a[i] == "-" {
				raw, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				raw, err = os.ReadFile(a[i])
			}
			if err != nil {
				return nil, usageErr(err)
			}
			if !json.Valid(raw) {
				return nil, usageErr(errors.New("client metadata is not valid JSON"))
			}
			return json.RawMessage(raw), nil
		}
	}
	clientPath := func(suffix string) func([]string) string {
		return func(a []string) string { return "/admin/v1/clients/" + url.PathEscape(a[0]) + suffix }
	}
	disabled := func(v bool) func(*cobra.Command, []string) (any, error) {
		return func(*cobra.Command, []string) (any, error) { return map[string]bool{"disabled": v}, nil }
	}
	clients.AddCommand(&cobra.Command{Use: "create FILE", Short: "Register a client from RFC 7591 metadata JSON (FILE or - for stdin)", Args: cobra.ExactArgs(1),
		RunE: run(http.MethodPost, fixed("/admin/v1/clients"), metadata(0))},
		&cobra.Command{Use: "list", Short: "List clients", Args: cobra.NoArgs, RunE: run(http.MethodGet, fixed("/admin/v1/clients"), nil)},
		&cobra.Command{Use: "get ID", Short: "Show a client", Args: cobra.ExactArgs(1), RunE: run(http.MethodGet, clientPath(""), nil)},
		&cobra.Command{Use: "update ID FILE", Short: "Change a client: the metadata fields in FILE (- for stdin) replace its own; null resets one", Args: cobra.ExactArgs(2),
			RunE: run(http.MethodPatch, clientPath(""), metadata(1))},
		&cobra.Command{Use: "disable ID", Short: "Stop a client at every endpoint", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodPatch, clientPath(""), disabled(true))},
		&cobra.Command{Use: "enable ID", Short: "Let a disabled client in again", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodPatch, clientPath(""), disabled(false))},
		&cobra.Command{Use: "rotate-secret ID", Short: "Issue a new client secret (shown once); the previous one works until end-overlap or the next rotation", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodPost, clientPath("/secret"), nil)},
		&cobra.Command{Use: "end-overlap ID", Short: "Stop accepting the secret before the last rotation", Args: cobra.ExactArgs(1),
			RunE: run(http.MethodDelete, clientPath("/secret/previous"), nil)})

	people.AddCommand(peopleRACommands(client)...)
	cmd.AddCommand(orgs, people, invites, clients)
	cmd.AddCommand(raCommands(client)...)
	cmd.AddCommand(samlCommand(client))
	return cmd
}

func (c *adminClient) do(method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.server+path, rd)
	if err != nil {
		return usageErr(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
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
