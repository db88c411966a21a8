package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "The agent's configuration file",
	}
	cmd.AddCommand(newConfigCheckCmd())
	return cmd
}

// newConfigCheckCmd validates the configuration as the agent would at start, without
// starting anything: the package's postinst starts the agent only when it passes.
func newConfigCheckCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the agent's configuration: every wrong field, or the apps it deploys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			apps := make([]string, 0, len(cfg.Apps))
			for name := range cfg.Apps {
				apps = append(apps, name)
			}
			slices.Sort(apps)
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, apps: %s\n", configPath, strings.Join(apps, ", "))
			return err
		},
	}
	configFlag(cmd, &configPath)
	return cmd
}
