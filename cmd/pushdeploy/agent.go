package main

import (
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/agent"
	"github.com/pushdeploy/pushdeploy/internal/sdnotify"
)

func newAgentCmd() *cobra.Command {
	var configPath, logFormat, logLevel string
	var stageLimit time.Duration
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the deploy agent: answer webhooks and deploy",
		Long: `Run the deploy agent: answer webhooks and deploy.

Under systemd (pushdeploy.service, Type=notify) the agent sends READY=1 once it listens and
its state is loaded, keeps its status line current (systemctl status pushdeploy), sends
STOPPING=1 when it begins to drain, and, with WatchdogSec=, pings the watchdog only while
its webhook listener, admin socket, state store and deploy queues are healthy. Its log
then goes to the journal natively, with each line's priority and fields
(journalctl -u pushdeploy -p err; journalctl -u pushdeploy PUSHDEPLOY_DEPLOY=<id>).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			notifier, watchdog, err := systemdEnv()
			if err != nil {
				return err
			}
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			out, err := logOutput(logFormat, os.Stderr)
			if err != nil {
				return err
			}
			level, err := zerolog.ParseLevel(logLevel)
			if err != nil {
				return err
			}
			a := agent.New(cfg, out, level)
			a.Version = version
			a.Notifier, a.Watchdog, a.StageLimit = notifier, watchdog, stageLimit
			if err := a.Open(); err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().StringVar(&logFormat, "log-format", "auto", "log format: auto (journal under systemd, console on a terminal, else json), json, console or journal")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().DurationVar(&stageLimit, "watchdog-stage-limit", agent.DefaultStageLimit,
		"with systemd's watchdog: how long a deploy may stay in one step without progress, beyond the step's own timeout, before the agent counts itself wedged")
	return cmd
}

// systemdEnv takes what systemd passes a Type=notify service out of the environment, so
// that no child process inherits it: the notification socket (NOTIFY_SOCKET; nil outside
// systemd) and the watchdog timeout (WATCHDOG_USEC, zero unless WATCHDOG_PID is us).
func systemdEnv() (sdnotify.Notifier, time.Duration, error) {
	socket := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	watchdog, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		return nil, 0, fmt.Errorf("systemd watchdog: %w", err)
	}
	if socket == "" {
		return nil, 0, nil
	}
	return sdnotify.Socket(socket), watchdog, nil
}
