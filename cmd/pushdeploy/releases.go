package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/release"
)

func newReleasesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "releases",
		Short: "List, verify and clean up an app's releases",
	}
	cmd.AddCommand(newReleasesListCmd(), newReleasesCheckCmd(), newReleasesGCCmd())
	return cmd
}

// appConfig loads the config and the named app from it.
func appConfig(path, app string) (*config.Config, *config.App, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	ac, ok := cfg.Apps[app]
	if !ok {
		return nil, nil, fmt.Errorf("app %q is not in %s", app, path)
	}
	return cfg, ac, nil
}

func newReleasesListCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list APP",
		Short: "List an app's releases, newest first, with their marks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := appConfig(configPath, args[0])
			if err != nil {
				return err
			}
			rels, err := release.NewStore(cfg.Layout()).List(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), rels)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\tSHA\tCREATED\tMARK\tBRANCH\tDEPLOY\tREASON")
			for _, r := range rels {
				cur := ""
				if r.Current {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cur, abbrev.SHA(r.SHA), r.Created.Local().Format(time.DateTime),
					markOf(string(r.Mark)), r.Branch, r.Deploy, abbrev.FirstLine(r.Reason))
			}
			return tw.Flush()
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newReleasesCheckCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check APP [SHA]",
		Short: "Re-hash every file of a release (default: current) against its git tree",
		Long: "check re-hashes every file of the release as a git blob and compares it, its exec bit, " +
			"every symlink and the set of names with the commit's tree. No difference is the proof " +
			"that the release is byte-exact. It exits non-zero when a difference is found.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ac, err := appConfig(configPath, args[0])
			if err != nil {
				return err
			}
			store := release.NewStore(cfg.Layout())
			sha := ""
			if len(args) == 2 {
				sha = args[1]
			} else if sha, err = store.Current(args[0]); err != nil {
				return err
			} else if sha == "" {
				return fmt.Errorf("%s has no current release", args[0])
			}
			if sha, err = resolveSHA(store, args[0], sha); err != nil {
				return err
			}
			cache, err := release.OpenCache(store.CacheDir(args[0]), release.Remote{URL: ac.Remote})
			if err != nil {
				return err
			}
			diffs, err := store.Check(cmd.Context(), args[0], sha, cache)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(out, checkJSON{App: args[0], SHA: sha, Matches: len(diffs) == 0, Differences: diffs}); err != nil {
					return err
				}
			} else {
				for _, d := range diffs {
					fmt.Fprintf(out, "%s: %s\n", d.Path, d.Problem)
				}
			}
			if len(diffs) > 0 {
				return fmt.Errorf("release %s of %s differs from its commit in %d places", abbrev.SHA(sha), args[0], len(diffs))
			}
			if !asJSON {
				fmt.Fprintf(out, "release %s of %s matches its commit exactly\n", abbrev.SHA(sha), args[0])
			}
			return nil
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the exit code still says whether it differs)")
	return cmd
}

// checkJSON is what `releases check --json` prints.
type checkJSON struct {
	App         string               `json:"app"`
	SHA         string               `json:"sha"`
	Matches     bool                 `json:"matches"`
	Differences []release.Difference `json:"differences"`
}

// resolveSHA expands an abbreviated sha to the one release it names.
func resolveSHA(store *release.Store, app, prefix string) (string, error) {
	rels, err := store.List(app)
	if err != nil {
		return "", err
	}
	var found []string
	for _, r := range rels {
		if len(prefix) >= 4 && len(prefix) <= 40 && r.SHA[:len(prefix)] == prefix {
			found = append(found, r.SHA)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%s has no release %q", app, prefix)
	}
	return "", fmt.Errorf("%q names %d releases of %s: give more digits", prefix, len(found), app)
}

func newReleasesGCCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "gc APP",
		Short: "Remove releases beyond keep_releases (never current nor the previous good one) and unused objects",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, cfg, done, err := connect(cmd.Context(), configPath)
			if err != nil {
				return err
			}
			defer done()
			ac, ok := cfg.Apps[args[0]]
			if !ok {
				return fmt.Errorf("app %q is not in %s", args[0], configPath)
			}
			res, err := b.GC(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, map[string]any{"app": args[0], "keep_releases": ac.KeepReleases, "removed": res.Removed,
					"objects": res.Objects, "bytes": res.Bytes})
			}
			for _, sha := range res.Removed {
				fmt.Fprintf(out, "removed release %s\n", abbrev.SHA(sha))
			}
			fmt.Fprintf(out, "kept %d newest releases of %s; removed %d releases and %d unused objects (%d bytes)\n",
				ac.KeepReleases, args[0], len(res.Removed), res.Objects, res.Bytes)
			return nil
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
