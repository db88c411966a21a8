package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/hooks"
)

func newHooksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "Webhooks: register them on GitHub, or send them from a git server",
	}
	cmd.AddCommand(newPostReceiveCmd(), newHooksEnsureCmd(), newHooksListCmd(), newHooksRemoveCmd(), newHooksPingCmd())
	return cmd
}

func newPostReceiveCmd() *cobra.Command {
	var urls []string
	var secretFile, repo string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "post-receive --url URL --secret-file FILE",
		Short: "git post-receive hook: send a GitHub-format signed push webhook for each updated ref",
		Long: "Install as hooks/post-receive of a bare repository (or call it from there). For each ref " +
			"git reports on standard input it POSTs a push payload in GitHub's format, signed with " +
			"HMAC-SHA256, to every --url, and prints each agent's answer for the pusher to see.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(urls) == 0 {
				return fmt.Errorf("--url: missing: the agent's webhook URL, e.g. http://host:5757/webhook/APP")
			}
			secret, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("--secret-file: %w", err)
			}
			key := []byte(strings.TrimSpace(string(secret)))
			if len(key) == 0 {
				return fmt.Errorf("--secret-file: %s is empty", secretFile)
			}
			gitDir := os.Getenv("GIT_DIR")
			if gitDir == "" {
				gitDir = "."
			}
			gitDir, _ = filepath.Abs(gitDir)
			if repo == "" {
				repo = hooks.RepoFromGitDir(gitDir)
			}
			updates, err := hooks.ParsePostReceive(cmd.InOrStdin(), repo)
			if err != nil {
				return err
			}
			client := &http.Client{Timeout: timeout}
			out := cmd.OutOrStdout()
			failed := 0
			for _, u := range updates {
				u.Pusher = pusher()
				u.HeadMessage, u.HeadTime = commitInfo(gitDir, u.After)
				payload, err := hooks.PushPayload(u)
				if err != nil {
					return err
				}
				for _, url := range urls {
					ans, err := hooks.Send(cmd.Context(), client, url, key, "push", payload)
					if err != nil {
						failed++
						fmt.Fprintf(out, "pushdeploy: %s → %s: %v\n", u.Ref, url, err)
						continue
					}
					msg := ans.Status
					switch {
					case ans.Deploy != "":
						msg += " as deploy " + ans.Deploy
					case ans.Reason != "":
						msg += ": " + ans.Reason
					}
					fmt.Fprintf(out, "pushdeploy: %s %.12s → %s: %s\n", strings.TrimPrefix(u.Ref, "refs/heads/"), u.After, url, msg)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d webhook deliveries failed", failed)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&urls, "url", nil, "agent webhook URL (repeat for several hosts)")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the HMAC secret shared with the agent")
	cmd.Flags().StringVar(&repo, "repo", "", "repository name owner/name sent in the payload (default: from the repository's path)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "timeout per delivery")
	return cmd
}

// pusher names who pushed, as git servers commonly tell hooks.
func pusher() string {
	for _, k := range []string{"GL_USERNAME", "REMOTE_USER", "USER"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "unknown"
}

// commitInfo reads the subject and commit time of sha, for the payload's head_commit.
func commitInfo(gitDir, sha string) (string, time.Time) {
	if strings.Trim(sha, "0") == "" {
		return "", time.Time{}
	}
	out, err := exec.Command("git", "--git-dir", gitDir, "log", "-1", "--format=%ct%x00%s", sha).Output()
	if err != nil {
		return "", time.Time{}
	}
	ts, subject, _ := strings.Cut(strings.TrimSpace(string(out)), "\x00")
	sec, _ := strconv.ParseInt(ts, 10, 64)
	return subject, time.Unix(sec, 0).UTC()
}
