package main

import (
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/units"
)

func newUnitsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "units",
		Short: "Show the systemd units a service.json becomes",
	}
	cmd.AddCommand(newUnitsRenderCmd())
	return cmd
}

var hexSHA = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

func newUnitsRenderCmd() *cobra.Command {
	var app, releaseDir string
	var user, asJSON bool
	cmd := &cobra.Command{
		Use:   "render DIR",
		Short: "Print the units the service.json in DIR would produce, without installing anything",
		Long: "render reads DIR/service.json (pushdeploy's format or ndm's) and prints every unit file " +
			"and drop-in a deploy of it would install, each preceded by a \"# <file name>\" line, for " +
			"review in a pull request. The units name the release directory; by default that is DIR " +
			"itself, and a release directory named after its commit (…/releases/<sha>) also gives the " +
			"units their SHA.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if app == "" {
				app = appName(filepath.Base(dir))
			}
			if releaseDir == "" {
				releaseDir = dir
			}
			if releaseDir, err = filepath.Abs(releaseDir); err != nil {
				return err
			}
			spec, err := units.Load(dir)
			if err != nil {
				return err
			}
			opts := units.Options{App: app, ReleaseDir: releaseDir, User: user}
			if base := filepath.Base(releaseDir); hexSHA.MatchString(base) {
				opts.SHA = base
			}
			files, err := units.Generate(spec, opts)
			if err != nil {
				return err
			}
			if asJSON {
				type file struct {
					Name    string `json:"name"`
					Content string `json:"content"`
				}
				out := make([]file, len(files))
				for i, f := range files {
					out[i] = file{f.Name, f.Content}
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"app": app, "release": releaseDir, "sha": opts.SHA,
					"files": out, "skipped": spec.Skipped})
			}
			return printUnits(cmd.OutOrStdout(), spec, files)
		},
	}
	cmd.Flags().StringVar(&app, "app", "", "app name used in unit names (default: DIR's base name)")
	cmd.Flags().StringVar(&releaseDir, "release", "", "release directory the units run, not under /tmp (default: DIR)")
	cmd.Flags().BoolVar(&user, "user", false, "render for a systemd user manager instead of the system manager")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: the files with their names and contents")
	return cmd
}

// appName makes a directory name usable as an app name, so render works on any checkout.
func appName(base string) string {
	name := strings.Trim(regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(base, "-"), "-_")
	if name == "" {
		return "app"
	}
	return name
}

func printUnits(w io.Writer, spec *units.Spec, files []units.File) error {
	for _, key := range spec.Skipped {
		if _, err := fmt.Fprintf(w, "# ndm service %s has no scripts.start: no unit, as ndm made none\n\n", key); err != nil {
			return err
		}
	}
	for _, note := range spec.Notes {
		if _, err := fmt.Fprintf(w, "# %s\n", note); err != nil {
			return err
		}
	}
	if len(spec.Notes) > 0 {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	for i, f := range files {
		sep := "\n"
		if i == len(files)-1 {
			sep = ""
		}
		if _, err := fmt.Fprintf(w, "# %s\n%s%s", f.Name, f.Content, sep); err != nil {
			return err
		}
	}
	return nil
}
