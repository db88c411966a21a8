package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/state"
)

func newRestartCmd() *cobra.Command {
	var configPath, service string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "restart APP",
		Short: "Restart an app's current release instance by instance, health-checked (through its queue)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := liveAgent(cmd.Context(), configPath, "restart")
			if err != nil {
				return err
			}
			d, err := c.Restart(cmd.Context(), args[0], service)
			if err != nil {
				return err
			}
			return follow(cmd.Context(), cmd.OutOrStdout(), c, d, noWait)
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().StringVar(&service, "service", "", "restart this service's instances only")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "queue it and return without waiting for the result")
	return cmd
}

// liveAgent returns a client of the running agent: restarts and rollbacks go through its
// deploy queues, so they need it.
func liveAgent(ctx context.Context, configPath, what string) (*admin.Client, error) {
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, err
	}
	c := admin.NewClient(cfg.AdminSocket)
	if _, err := c.Status(ctx, "\x00probe"); errors.Is(err, admin.ErrAgentDown) {
		return nil, fmt.Errorf("%s needs the agent running: it goes through the app's deploy queue, and nothing answers on %s (start it: %s)", what, cfg.AdminSocket, startHint(configPath))
	}
	return c, nil
}

// startHint says how to start the agent that reads configPath: the packaged service,
// pushdeploy.service, reads the default configuration; another file needs an agent of its
// own.
func startHint(configPath string) string {
	if configPath == config.DefaultPath {
		return "systemctl start pushdeploy, where the .deb is installed; or pushdeploy agent"
	}
	return "pushdeploy agent --config " + configPath
}

// follow prints the queued record and, unless noWait, waits for it to end, printing each
// status it goes through; a restart or rollback that did not succeed is an error.
func follow(ctx context.Context, w io.Writer, c *admin.Client, d *state.Deploy, noWait bool) error {
	fmt.Fprintf(w, "%s %s of %s queued: %s\n", d.App, d.Kind, abbrev.SHA(d.SHA), d.ID)
	if d.Note != "" {
		fmt.Fprintf(w, "note: %s\n", d.Note)
	}
	if noWait {
		return nil
	}
	last := d.Status
	for !d.Status.Final() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting (%s goes on in the agent): %w", d.ID, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
		next, _, err := c.Deploy(ctx, d.App, d.ID)
		if err != nil {
			return err
		}
		d = next
		if d.Status != last {
			fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05"), d.Status)
			last = d.Status
		}
	}
	return outcome(w, d)
}
