package main

import (
	"github.com/spf13/cobra"
)

func newRollbackCmd() *cobra.Command {
	var configPath string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "rollback APP [SHA]",
		Short: "Roll an app back to its previous good release, or to SHA, health-checked (through its queue)",
		Long: "Roll an app back to a release already on this host, without fetching: the previous good release\n" +
			"(the newest release marked good that is older than the current one), or SHA (a unique prefix is\n" +
			"enough; a release marked bad is accepted when named, and the command says so). Its instances\n" +
			"restart in health-checked batches like a deploy's; current switches only when they are healthy.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := liveAgent(cmd.Context(), configPath, "rollback")
			if err != nil {
				return err
			}
			sha := ""
			if len(args) == 2 {
				sha = args[1]
			}
			d, err := c.Rollback(cmd.Context(), args[0], sha)
			if err != nil {
				return err
			}
			return follow(cmd.Context(), cmd.OutOrStdout(), c, d, noWait)
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "queue it and return without waiting for the result")
	return cmd
}
