package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/hooks"
)

// githubFlags are the flags every GitHub-side hooks command takes.
type githubFlags struct {
	tokenFile, apiURL string
}

func (f *githubFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the GitHub token (default: $GITHUB_TOKEN)")
	cmd.Flags().StringVar(&f.apiURL, "api-url", "", "GitHub Enterprise Server URL, e.g. https://ghe.example.com (default: github.com)")
}

// client builds the GitHub client from --token-file, else $GITHUB_TOKEN.
func (f *githubFlags) client() (*hooks.GitHub, error) {
	token := strings.TrimSpace(os.Getenv("GITHUB_TOKEN"))
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("--token-file: %s is empty", f.tokenFile)
		}
	}
	if token == "" {
		return nil, fmt.Errorf("GitHub token: missing: set GITHUB_TOKEN or pass --token-file (the token needs admin rights on repository hooks)")
	}
	return hooks.NewGitHub(token, f.apiURL)
}

func newHooksEnsureCmd() *cobra.Command {
	var gf githubFlags
	var url, secretFile string
	var rotate, insecure, asJSON bool
	cmd := &cobra.Command{
		Use:   "ensure OWNER/REPO --url URL --secret-file FILE",
		Short: "Create or fix the repository's push webhook to URL (idempotent)",
		Long: "Finds the hook whose URL is exactly --url among all the repository's hooks, edits it when it is " +
			"inactive, does not send push events, does not send JSON or has another TLS setting, creates it " +
			"when missing, and prints created, updated or unchanged with the hook id. GitHub never shows a " +
			"hook's secret: --rotate-secret forces an edit that sets it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if url == "" {
				return fmt.Errorf("--url: missing: the agent's webhook URL, e.g. https://host:5757/webhook/APP")
			}
			secret, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("--secret-file: %w", err)
			}
			key := strings.TrimSpace(string(secret))
			if key == "" {
				return fmt.Errorf("--secret-file: %s is empty", secretFile)
			}
			gh, err := gf.client()
			if err != nil {
				return err
			}
			res, err := gh.Ensure(cmd.Context(), args[0], hooks.HookSpec{URL: url, Secret: key, InsecureSSL: insecure}, rotate)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s hook %d → %s\n", res.Action, res.ID, res.URL)
			return nil
		},
	}
	gf.add(cmd)
	cmd.Flags().StringVar(&url, "url", "", "the agent's webhook URL")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the webhook's HMAC secret (the agent's secret_file)")
	cmd.Flags().BoolVar(&rotate, "rotate-secret", false, "set the secret even when nothing else differs")
	cmd.Flags().BoolVar(&insecure, "insecure-ssl", false, "let GitHub skip TLS verification when delivering (not recommended)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newHooksListCmd() *cobra.Command {
	var gf githubFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list OWNER/REPO",
		Short: "List the repository's webhooks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gh, err := gf.client()
			if err != nil {
				return err
			}
			list, err := gh.List(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), list)
			}
			out := cmd.OutOrStdout()
			for _, h := range list {
				state := "active"
				if !h.Active {
					state = "inactive"
				}
				tls := ""
				if h.InsecureSSL {
					tls = " insecure-ssl"
				}
				fmt.Fprintf(out, "%d\t%s\t%s\t%s\t%s%s\n", h.ID, h.URL, state, strings.Join(h.Events, ","), h.ContentType, tls)
			}
			return nil
		},
	}
	gf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the hooks as JSON")
	return cmd
}

func newHooksRemoveCmd() *cobra.Command {
	var gf githubFlags
	cmd := &cobra.Command{
		Use:   "remove OWNER/REPO URL|ID",
		Short: "Delete the repository's webhook with this exact URL or id",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			gh, err := gf.client()
			if err != nil {
				return err
			}
			id, err := gh.Remove(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed hook %d\n", id)
			return nil
		},
	}
	gf.add(cmd)
	return cmd
}

func newHooksPingCmd() *cobra.Command {
	var gf githubFlags
	cmd := &cobra.Command{
		Use:   "ping OWNER/REPO URL|ID",
		Short: "Ask GitHub to send a ping event to the webhook with this exact URL or id",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			gh, err := gf.client()
			if err != nil {
				return err
			}
			id, err := gh.Ping(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pinged hook %d (see its recent deliveries on GitHub)\n", id)
			return nil
		},
	}
	gf.add(cmd)
	return cmd
}
