package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// polishTree gives every command of the tree two things it declares in its Use line: an
// argument count error that says what the command takes, and shell completion of its
// APP and DEPLOY_ID arguments (app names from the config, deploy ids from the agent or the
// data directory).
func polishTree(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		polishTree(c)
	}
	names := argNames(cmd.Use)
	if orig := cmd.Args; orig != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := orig(c, args); err != nil {
				takes := "no arguments"
				if len(names) > 0 {
					takes = strings.Join(strings.Fields(c.Use)[1:], " ")
				}
				got := "no arguments"
				switch len(args) {
				case 0:
				case 1:
					got = "1 argument (" + args[0] + ")"
				default:
					got = fmt.Sprintf("%d arguments (%s)", len(args), strings.Join(args, " "))
				}
				name := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
				return fmt.Errorf("%s takes %s; got %s; see %s --help", name, takes, got, c.CommandPath())
			}
			return nil
		}
	}
	if cmd.ValidArgsFunction == nil && len(names) > 0 && names[0] == "APP" {
		cmd.ValidArgsFunction = func(c *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
			if len(args) >= len(names) {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			switch names[len(args)] {
			case "APP":
				return completeApps(c, prefix), cobra.ShellCompDirectiveNoFileComp
			case "DEPLOY_ID", "ID":
				return completeDeploys(c, args[0], prefix), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
	}
}

// argNames are the argument names of a Use line: "history APP [DEPLOY_ID]" → APP, DEPLOY_ID.
func argNames(use string) []string {
	var out []string
	for _, f := range strings.Fields(use)[1:] {
		f = strings.Trim(f, "[]. ")
		if f != "" && f == strings.ToUpper(f) && !strings.HasPrefix(f, "-") {
			out = append(out, f)
		}
	}
	return out
}

func configOf(c *cobra.Command) string {
	if f := c.Flags().Lookup("config"); f != nil {
		return f.Value.String()
	}
	return ""
}

// completeApps lists the configured apps starting with prefix.
func completeApps(c *cobra.Command, prefix string) []string {
	cfg, err := loadConfig(configOf(c))
	if err != nil {
		return nil
	}
	var out []string
	for name := range cfg.Apps {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// completeDeploys lists app's deploy ids starting with prefix, newest first, each with its
// kind, status and sha as the description.
func completeDeploys(c *cobra.Command, app, prefix string) []string {
	b, _, done, err := connect(c.Context(), configOf(c))
	if err != nil {
		return nil
	}
	defer done()
	hist, err := b.History(c.Context(), app, 50)
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range hist {
		if strings.HasPrefix(d.ID, prefix) {
			out = append(out, fmt.Sprintf("%s\t%s %s %.12s", d.ID, kind(&d), d.Status, d.SHA))
		}
	}
	return out
}
