package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/agent"
	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/journald"
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
		newLogsCmd(), newDeployCmd(), newConfigCmd(), newFleetCmd(), newLockCmd(), newUnlockCmd(), newPromoteCmd())
	polishTree(root)
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
	cfg, err := config.Load(path, env)
	if err != nil {
		return nil, configError{err}
	}
	return cfg, nil
}

// configError is an error in the configuration file (missing, unreadable or invalid):
// main exits with exitConfig for it.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// logOutput picks the journal's native protocol when stderr is the journal's stream (as
// under systemd), a readable console format on a terminal, and JSON lines otherwise.
func logOutput(format string, w *os.File) (io.Writer, error) {
	switch format {
	case "json":
		return w, nil
	case "console":
		return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}, nil
	case "journal":
		return journald.NewWriter(w), nil
	case "auto", "":
		if ok, _ := journal.StderrIsJournalStream(); ok && w == os.Stderr {
			return journald.NewWriter(w), nil
		}
		if term.IsTerminal(int(w.Fd())) {
			return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05"}, nil
		}
		return w, nil
	}
	return nil, fmt.Errorf("--log-format: want auto, json, console or journal, got %q", format)
}

// backend is what the read and housekeeping commands need from the agent: a running agent
// over its admin socket, or the data directory when the agent is down.
type backend interface {
	Status(ctx context.Context, app string) ([]admin.AppStatus, error)
	History(ctx context.Context, app string, limit int) ([]state.Deploy, error)
	Deploy(ctx context.Context, app, id string) (*state.Deploy, []byte, error)
	GC(ctx context.Context, app string) (release.GCResult, error)
	Follow(ctx context.Context, app, id string, from int64, emit func(line []byte, next int64) error) (*state.Deploy, error)
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
