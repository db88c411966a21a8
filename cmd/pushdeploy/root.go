package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/agent"
	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pushdeploy",
		Short:         "Deploy exactly the pushed commit, on every host, from a signed git push",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newVersionCmd(), newStatusCmd(), newHistoryCmd(),
		newReleasesCmd(), newHooksCmd(), newUnitsCmd(), newRestartCmd(), newRollbackCmd(), newEnvCmd(),
		newFleetCmd(), newLockCmd(), newUnlockCmd(), newPromoteCmd())
	return root
}

// configFlag adds the --config flag every command that needs the agent's config takes.
func configFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "config", config.DefaultPath, "agent configuration file")
}

func loadConfig(path string) (*config.Config, error) {
	env := config.Env{UID: os.Getuid(), SessionBus: os.Getenv("DBUS_SESSION_BUS_ADDRESS")}
	env.Hostname, _ = os.Hostname()
	if env.ConfigHome = os.Getenv("XDG_CONFIG_HOME"); env.ConfigHome == "" {
		if home, err := os.UserHomeDir(); err == nil {
			env.ConfigHome = filepath.Join(home, ".config")
		}
	}
	return config.Load(path, env)
}

// logOutput picks JSON for machines and a readable console format on a terminal.
func logOutput(format string, w *os.File) (io.Writer, error) {
	switch format {
	case "json":
		return w, nil
	case "console":
		return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}, nil
	case "auto", "":
		if term.IsTerminal(int(w.Fd())) {
			return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}, nil
		}
		return w, nil
	}
	return nil, fmt.Errorf("--log-format: want auto, json or console, got %q", format)
}

// backend is what the read and housekeeping commands need from the agent: a running agent
// over its admin socket, or the data directory when the agent is down.
type backend interface {
	Status(ctx context.Context, app string) ([]admin.AppStatus, error)
	History(ctx context.Context, app string, limit int) ([]state.Deploy, error)
	Deploy(ctx context.Context, app, id string) (*state.Deploy, []byte, error)
	GC(ctx context.Context, app string) (release.GCResult, error)
}

// connect loads the config and returns the running agent if it answers, else the data
// directory read directly; done releases what it opened.
func connect(ctx context.Context, configPath string) (b backend, cfg *config.Config, done func(), err error) {
	if cfg, err = loadConfig(configPath); err != nil {
		return nil, nil, nil, err
	}
	c := admin.NewClient(cfg.AdminSocket)
	if _, err := c.Status(ctx, "\x00probe"); err == nil || !errors.Is(err, admin.ErrAgentDown) {
		return c, cfg, func() {}, nil
	}
	l, err := agent.OpenLocal(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("agent not running, and %w", err)
	}
	return l, cfg, func() { l.Close() }, nil
}
