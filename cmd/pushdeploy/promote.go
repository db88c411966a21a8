package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/release"
)

const promoteLong = `promote moves an environment's deploy branch to exactly the commit another environment
runs and found good: the bytes QA tested are the bytes production runs.

It reads the --from environment from the fleet's registry in etcd. Without --sha every host
there must be live, run the same commit marked good, and have no deploy under way; with
--sha that commit (a prefix is enough) must be current and good on a live host and have
failed or been halted on none. Then it pushes the commit to the --to environment's branch
with the app's remote and credentials from the agent configuration (--config): the commit
is fetched from the remote, never from elsewhere, and the push applies only if the branch
has not moved since it was read. A branch the commit does not descend from is refused
unless --force.`

// promoteAnswer is what promote did, for --json.
type promoteAnswer struct {
	App   string       `json:"app"`
	From  string       `json:"from"`
	To    string       `json:"to"`
	Hosts []string     `json:"tested_on"`
	Move  release.Move `json:"move"`
}

func newPromoteCmd() *cobra.Command {
	f := &fleetFlags{}
	var from, to, sha string
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "promote APP --from ENV --to ENV",
		Short: "Move an environment's branch to exactly the commit another environment runs, good",
		Long:  promoteLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			app := args[0]
			if from == "" || to == "" || from == to {
				return errors.New("--from and --to: name two environments, e.g. --from staging --to production")
			}
			st, s, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if s.agent == nil || s.agent.Apps[app] == nil {
				return fmt.Errorf("app %s: not in the agent configuration (--config %s), which names its remote and credentials", app, f.configPath)
			}
			ac := s.agent.Apps[app]
			fromBranch, err := branchOf(ac, from)
			if err != nil {
				return err
			}
			toBranch, err := branchOf(ac, to)
			if err != nil {
				return err
			}
			if fromBranch == toBranch {
				return fmt.Errorf("apps.%s.branch %q: %s and %s deploy the same branch", app, ac.Branch, from, to)
			}
			snap, err := st.Read(cmd.Context())
			if err != nil {
				return s.explain(err)
			}
			commit, hosts, err := snap.Tested(app, from, sha)
			if err != nil {
				return fmt.Errorf("promote %s: %w", app, err)
			}
			mv, err := ac.Origin().MoveBranch(cmd.Context(), commit, fromBranch, toBranch, force)
			if errors.Is(err, release.ErrNotFastForward) {
				return fmt.Errorf("promote %s: %w (--force moves it anyway)", app, err)
			}
			if err != nil {
				return fmt.Errorf("promote %s: %w", app, err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), promoteAnswer{App: app, From: from, To: to, Hosts: hosts, Move: mv})
			}
			w := cmd.OutOrStdout()
			tested := fmt.Sprintf("%s, good on %d %s host(s): %s", abbrev.SHA(commit), len(hosts), from, strings.Join(hosts, ", "))
			switch {
			case mv.UpToDate:
				fmt.Fprintf(w, "%s: %s already at %s\n", app, toBranch, tested)
			case mv.Old == "":
				fmt.Fprintf(w, "%s: created %s at %s\n", app, toBranch, tested)
			case mv.Forced:
				fmt.Fprintf(w, "%s: moved %s from %s to %s (forced: not a fast-forward)\n", app, toBranch, abbrev.SHA(mv.Old), tested)
			default:
				fmt.Fprintf(w, "%s: moved %s from %s to %s (fast-forward)\n", app, toBranch, abbrev.SHA(mv.Old), tested)
			}
			return nil
		},
	}
	f.register(cmd, fleet.DefaultPrefix, "etcd key prefix of the fleet's keys (default: the agent configuration's etcd.fleet_prefix)")
	cmd.Flags().StringVar(&from, "from", "", "the environment whose commit is promoted (required)")
	cmd.Flags().StringVar(&to, "to", "", "the environment whose branch moves (required)")
	cmd.Flags().StringVar(&sha, "sha", "", "promote this commit (a prefix), current and good on a --from host")
	cmd.Flags().BoolVar(&force, "force", false, "move the branch even if the commit does not descend from it")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// branchOf is the one branch app deploys in env.
func branchOf(ac *config.App, env string) (string, error) {
	b := ac.Branches([]string{env})
	if len(b) != 1 || strings.ContainsAny(b[0], `*?[\`) {
		return "", fmt.Errorf("apps.%s.branch %q: does not name one branch for %s", ac.Name(), ac.Branch, env)
	}
	return b[0], nil
}
