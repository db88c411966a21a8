package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/fleet"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
)

const fleetLong = `fleet shows and steers the hosts of an environment through etcd: the registry every
agent with an etcd section keeps (one key per host and environment, bound to its lease),
and the halts a failed rollout sets. It needs no agent: etcd comes from the agent
configuration (--config), the ETCDCTL_* variables or the flags, as for pushdeploy env.`

// fleetFlags are the connection settings and the environment the fleet commands take.
type fleetFlags struct {
	envFlags
	env string
}

func newFleetCmd() *cobra.Command {
	f := &fleetFlags{}
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Show the hosts of an environment, resume a halted rollout",
		Long:  fleetLong,
	}
	f.register(cmd, fleet.DefaultPrefix, "etcd key prefix of the fleet's keys (default: the agent configuration's etcd.fleet_prefix)")
	cmd.AddCommand(newFleetStatusCmd(f), newFleetResumeCmd(f), newFleetForgetCmd(f))
	return cmd
}

// open connects to etcd with the merged settings. The prefix is --prefix, else the agent
// configuration's fleet_prefix, else the default.
func (f *fleetFlags) open(cmd *cobra.Command) (*fleet.Store, *envSettings, error) {
	s, err := f.settings(cmd)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.store(cmd, s)
	return st, s, err
}

// store connects to etcd with settings s.
func (f *fleetFlags) store(cmd *cobra.Command, s *envSettings) (*fleet.Store, error) {
	fc := fleet.Config{Conn: s.renv.Config, Prefix: fleet.DefaultPrefix}
	switch {
	case cmd.Flags().Changed("prefix"):
		fc.Prefix = f.prefix
	case s.agent != nil && s.agent.Etcd != nil:
		fc.Prefix = s.agent.Etcd.FleetPrefix
	}
	st, err := fleet.Open(fc)
	if err != nil {
		return nil, fmt.Errorf("etcd settings: %w", err)
	}
	return st, nil
}

// inEnv is the RunE of a command that changes one environment's keys: do gets the store
// and the environment.
func (f *fleetFlags) inEnv(do func(cmd *cobra.Command, args []string, st *fleet.Store, s *envSettings, env string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		st, s, err := f.open(cmd)
		if err != nil {
			return err
		}
		defer st.Close()
		env, err := f.envFor(s)
		if err != nil {
			return err
		}
		return do(cmd, args, st, s, env)
	}
}

// envFor is --env, else the default environment (as for pushdeploy env).
func (f *fleetFlags) envFor(s *envSettings) (string, error) {
	if f.env != "" {
		return f.env, nil
	}
	return s.defaultEnv()
}

func newFleetStatusCmd(f *fleetFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [APP]",
		Short: "One line per host: the commit it runs, its state and since when; then a summary",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, s, err := f.open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			snap, err := st.Read(cmd.Context())
			if err != nil {
				return s.explain(err)
			}
			var sums []fleet.Summary
			for _, ae := range snap.Apps() {
				if (len(args) == 0 || args[0] == ae[0]) && (f.env == "" || f.env == ae[1]) {
					sums = append(sums, snap.Summarize(ae[0], ae[1]))
				}
			}
			if len(sums) == 0 && len(args) == 1 {
				return fmt.Errorf("app %s: no host has registered it%s", args[0], inEnv(f.env))
			}
			if asJSON {
				if sums == nil {
					sums = []fleet.Summary{}
				}
				return printJSON(cmd.OutOrStdout(), sums)
			}
			return printFleet(cmd.OutOrStdout(), sums, time.Now())
		},
	}
	cmd.Flags().StringVar(&f.env, "env", "", "only this environment (default: every one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func inEnv(env string) string {
	if env == "" {
		return ""
	}
	return " in " + env
}

func printFleet(w io.Writer, sums []fleet.Summary, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(sums) == 0 {
		fmt.Fprintln(tw, "no hosts in the registry")
	}
	for i, s := range sums {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s/%s: %s\n", s.App, s.Env, s)
		if s.Lock != nil {
			fmt.Fprintf(tw, "  locked %s\n", s.Lock)
		}
		for _, h := range s.Halts {
			fmt.Fprintf(tw, "  halted %s: failed on %s %s ago%s (pushdeploy fleet resume %s --env %s)\n",
				abbrev.SHA(h.SHA), h.Host, ago(now, h.At), colonIf(h.Error), s.App, s.Env)
		}
		fmt.Fprintf(tw, "  HOST\tSHA\tMARK\tSTATE\tSINCE\tNOTE\n")
		for _, l := range s.Lines {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", l.Host, orDash(abbrev.SHA(l.SHA)), orDash(l.Mark), l.State, ago(now, l.Since), l.Note)
		}
	}
	return tw.Flush()
}

// ago is how long before now t was, to the second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func colonIf(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func newFleetResumeCmd(f *fleetFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resume APP",
		Short: "Clear the halts of an app's rollout: hosts deploy the halted commit again",
		Args:  cobra.ExactArgs(1),
		RunE: f.inEnv(func(cmd *cobra.Command, args []string, st *fleet.Store, s *envSettings, env string) error {
			halts, err := st.Resume(cmd.Context(), args[0], env)
			if err != nil {
				return s.explain(err)
			}
			if len(halts) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: nothing halted\n", args[0], env)
			}
			for _, h := range halts {
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: resumed %s (it failed on %s%s); hosts deploy it again at their next catch-up or push\n",
					args[0], env, abbrev.SHA(h.SHA), h.Host, colonIf(h.Error))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&f.env, "env", "", "the environment (default: $PUSHDEPLOY_ENV, the agent configuration's only one, or production)")
	return cmd
}

func newFleetForgetCmd(f *fleetFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forget HOST",
		Short: "Remove an unreachable host (taken out of service) from the registry",
		Args:  cobra.ExactArgs(1),
		RunE: f.inEnv(func(cmd *cobra.Command, args []string, st *fleet.Store, s *envSettings, env string) error {
			if err := st.Forget(cmd.Context(), env, args[0]); err != nil {
				return s.explain(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: forgotten\n", env, args[0])
			return nil
		}),
	}
	cmd.Flags().StringVar(&f.env, "env", "", "the environment (default: $PUSHDEPLOY_ENV, the agent configuration's only one, or production)")
	return cmd
}
