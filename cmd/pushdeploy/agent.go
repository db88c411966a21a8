package main

import (
	"os"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/agent"
)

func newAgentCmd() *cobra.Command {
	var configPath, logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the deploy agent: answer webhooks and deploy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if err := a.Open(); err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().StringVar(&logFormat, "log-format", "auto", "log format: auto (console on a terminal, else json), json or console")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
