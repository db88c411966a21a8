package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/agent"
	"github.com/pushdeploy/pushdeploy/fleet"
)

const lockLong = `lock stops an app's deploys of pushed commits until unlock: pushes are still accepted and
recorded, and wait (a newer push replaces the one waiting); catch-up queues nothing. Restarts
and rollbacks are not locked.

With an etcd section in the agent configuration (or etcd given by ETCDCTL_ENDPOINTS or
--endpoints) the lock is fleet-wide, per app and environment; without etcd it is a file in
the data directory and holds this host only.`

func newLockCmd() *cobra.Command {
	f := &fleetFlags{}
	var why string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lock APP -m REASON",
		Short: "Lock an app's deploys (fleet-wide through etcd, else on this host)",
		Long:  lockLong,
		Args:  cobra.ExactArgs(1),
		RunE: f.withLocker(func(cmd *cobra.Command, l *locker) error {
			if why == "" {
				return errors.New("-m: say why deploys are locked")
			}
			lock := fleet.Lock{Who: whoAmI(os.Getenv), Why: why, At: time.Now().UTC()}
			if held, err := l.set(cmd.Context(), lock); err != nil {
				if held != nil {
					return fmt.Errorf("%s: already locked %s", l.name, held)
				}
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), lockAnswer{App: l.app, Env: l.env, Scope: l.scope(), Locked: true, Lock: &lock})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: locked %s (%s)\n", l.name, lock, l.scope())
			return nil
		}),
	}
	f.register(cmd, fleet.DefaultPrefix, "etcd key prefix of the fleet's keys (default: the agent configuration's etcd.fleet_prefix)")
	cmd.Flags().StringVarP(&why, "message", "m", "", "why deploys are locked (required)")
	cmd.Flags().StringVar(&f.env, "env", "", "the environment (default: $PUSHDEPLOY_ENV, the agent configuration's only one, or production)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(newLockStatusCmd(f))
	return cmd
}

func newLockStatusCmd(f *fleetFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status APP",
		Short: "Say whether an app's deploys are locked, by whom, since when and why",
		Args:  cobra.ExactArgs(1),
		RunE: f.withLocker(func(cmd *cobra.Command, l *locker) error {
			held, err := l.get(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), lockAnswer{App: l.app, Env: l.env, Scope: l.scope(), Locked: held != nil, Lock: held})
			}
			if held == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: unlocked (%s)\n", l.name, l.scope())
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: locked %s (%s ago, %s)\n", l.name, held, time.Since(held.At).Round(time.Second), l.scope())
			return nil
		}),
	}
	cmd.Flags().StringVar(&f.env, "env", "", "the environment (default: $PUSHDEPLOY_ENV, the agent configuration's only one, or production)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newUnlockCmd() *cobra.Command {
	f := &fleetFlags{}
	cmd := &cobra.Command{
		Use:   "unlock APP",
		Short: "Unlock an app's deploys: the newest waiting push runs",
		Args:  cobra.ExactArgs(1),
		RunE: f.withLocker(func(cmd *cobra.Command, l *locker) error {
			held, err := l.remove(cmd.Context())
			if err != nil {
				return err
			}
			if held == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: was not locked\n", l.name)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: unlocked (was locked %s)\n", l.name, held)
			return nil
		}),
	}
	f.register(cmd, fleet.DefaultPrefix, "etcd key prefix of the fleet's keys (default: the agent configuration's etcd.fleet_prefix)")
	cmd.Flags().StringVar(&f.env, "env", "", "the environment (default: $PUSHDEPLOY_ENV, the agent configuration's only one, or production)")
	return cmd
}

// lockAnswer is the JSON of lock and lock status.
type lockAnswer struct {
	App    string      `json:"app"`
	Env    string      `json:"env,omitempty"`
	Scope  string      `json:"scope"` // fleet or host
	Locked bool        `json:"locked"`
	Lock   *fleet.Lock `json:"lock,omitempty"`
}

// locker is an app's deploy lock: in etcd (st set) or in this host's data directory.
type locker struct {
	app, env, name string
	st             *fleet.Store
	s              *envSettings
}

// withLocker is the RunE of a lock command: do gets the lock of the app named by the
// one argument.
func (f *fleetFlags) withLocker(do func(cmd *cobra.Command, l *locker) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		l, err := f.locker(cmd, args[0])
		if err != nil {
			return err
		}
		defer l.close()
		return do(cmd, l)
	}
}

// locker finds where app's lock lives: the host's data directory when the agent
// configuration has no etcd section and no etcd is named otherwise, else etcd.
func (f *fleetFlags) locker(cmd *cobra.Command, app string) (*locker, error) {
	s, err := f.settings(cmd)
	if err != nil {
		return nil, err
	}
	if s.agent != nil && s.agent.Etcd == nil && !cmd.Flags().Changed("endpoints") && s.getenv("ETCDCTL_ENDPOINTS") == "" {
		if _, ok := s.agent.Apps[app]; !ok {
			return nil, fmt.Errorf("app %q: not in the agent configuration", app)
		}
		return &locker{app: app, name: app + " on " + s.agent.Host, s: s}, nil
	}
	env, err := f.envFor(s)
	if err != nil {
		return nil, err
	}
	st, err := f.store(cmd, s)
	if err != nil {
		return nil, err
	}
	return &locker{app: app, env: env, name: app + "/" + env, st: st, s: s}, nil
}

func (l *locker) scope() string {
	if l.st == nil {
		return "this host only: no etcd"
	}
	return "fleet-wide"
}

func (l *locker) close() {
	if l.st != nil {
		l.st.Close()
	}
}

func (l *locker) set(ctx context.Context, lock fleet.Lock) (*fleet.Lock, error) {
	if l.st == nil {
		return agent.SetLocalLock(l.s.agent, l.app, lock)
	}
	held, err := l.st.SetLock(ctx, l.app, l.env, lock)
	return held, l.s.explain(err)
}

func (l *locker) get(ctx context.Context) (*fleet.Lock, error) {
	if l.st == nil {
		return agent.LocalLock(l.s.agent, l.app)
	}
	held, err := l.st.GetLock(ctx, l.app, l.env)
	return held, l.s.explain(err)
}

func (l *locker) remove(ctx context.Context) (*fleet.Lock, error) {
	if l.st == nil {
		return agent.RemoveLocalLock(l.s.agent, l.app)
	}
	held, err := l.st.Unlock(ctx, l.app, l.env)
	return held, l.s.explain(err)
}

// whoAmI names the person locking: $SUDO_USER or $USER, at this machine.
func whoAmI(getenv func(string) string) string {
	who := getenv("SUDO_USER")
	if who == "" {
		who = getenv("USER")
	}
	if who == "" {
		who = "unknown"
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		who += "@" + host
	}
	return who
}
