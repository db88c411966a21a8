package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
)

func newDeployCmd() *cobra.Command {
	var configPath, sha, env string
	var wait bool
	cmd := &cobra.Command{
		Use:   "deploy APP",
		Short: "Deploy the tip of an app's branch now, as a push of it would (through its queue)",
		Long: "deploy asks the agent to deploy the commit its branch (deploy-<env>) points at now, " +
			"as if it had just been pushed: the same queue (a newer push supersedes it) and the " +
			"same stale check (the branch must still point at it when its turn comes). The " +
			"record is a deploy with trigger \"manual\" and your user name. --sha deploys only " +
			"if the tip is that commit: a host never deploys what its branch does not say " +
			"(rollback goes back to a release on disk). --wait shows the steps and batches and " +
			"exits non-zero unless the deploy succeeds.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := liveAgent(cmd.Context(), configPath, "deploy")
			if err != nil {
				return err
			}
			d, err := c.DeployBranch(cmd.Context(), args[0], admin.DeployRequest{SHA: sha, Env: env, User: whoami()})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s deploy of %s (%s) queued: %s\n", d.App, abbrev.SHA(d.SHA), d.Branch, d.ID)
			if !wait {
				return nil
			}
			final, err := c.Follow(cmd.Context(), d.App, d.ID, 0, func(line []byte, _ int64) error {
				progress(out, line)
				return nil
			})
			if err != nil {
				return err
			}
			return outcome(out, final)
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().StringVar(&sha, "sha", "", "deploy only if the branch's tip is this commit (a prefix will do)")
	cmd.Flags().StringVar(&env, "env", "", "the environment whose branch to deploy (default: the host's only one)")
	cmd.Flags().BoolVar(&wait, "wait", false, "show the progress (step, batch n of m) and exit with the outcome")
	return cmd
}

// progress prints what a log line says of a deploy's progress: its steps, its batches and
// its script's output; other lines are left to `pushdeploy logs`.
func progress(w io.Writer, line []byte) {
	var l struct {
		Message, Status, Line, Unit, Verdict string
		Batch, Of                            int
		Instances                            []string
		Time                                 time.Time
	}
	if json.Unmarshal(line, &l) != nil {
		return
	}
	at := l.Time.Local().Format("15:04:05")
	switch l.Message {
	case "deploy status":
		fmt.Fprintf(w, "%s %s\n", at, l.Status)
	case "batch started":
		fmt.Fprintf(w, "%s batch %d of %d: %s\n", at, l.Batch, l.Of, strings.Join(l.Instances, ", "))
	case "batch healthy":
		fmt.Fprintf(w, "%s batch %d of %d healthy\n", at, l.Batch, l.Of)
	case "instance unhealthy", "deploy failed, putting previous units back", "deploy failed, rollout halted without revert":
		fmt.Fprintf(w, "%s %s %s\n", at, l.Message, l.Unit)
	case "script output":
		fmt.Fprintf(w, "         | %s\n", l.Line)
	}
}

// whoami names the user who runs the command, for the record: the one behind sudo if any.
func whoami() string {
	for _, v := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if u := os.Getenv(v); u != "" {
			return u
		}
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
