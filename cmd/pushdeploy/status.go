package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/state"
)

func newStatusCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [APP]",
		Short: "Show each app's live release and its deploys under way",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _, done, err := connect(cmd.Context(), configPath)
			if err != nil {
				return err
			}
			defer done()
			app := ""
			if len(args) == 1 {
				app = args[0]
			}
			st, err := b.Status(cmd.Context(), app)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, st []admin.AppStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, s := range st {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		agentNote := ""
		if !s.Agent {
			agentNote = "  (agent not running: read from disk)"
		}
		fmt.Fprintf(tw, "%s\t%s%s\n", s.App, s.Repo, agentNote)
		if s.Current != nil {
			fmt.Fprintf(tw, "  current\t%s\t%s\tsince %s\t%s\n", abbrev.SHA(s.Current.SHA), s.Current.Branch,
				s.Current.Created.Local().Format(time.DateTime), markOf(string(s.Current.Mark)))
		} else {
			fmt.Fprintf(tw, "  current\tnone\n")
		}
		if c := s.Config; c != nil {
			switch {
			case c.Rev > 0:
				fmt.Fprintf(tw, "  config\t%s\tetcd revision %d\tread %s\n", c.Doc, c.Rev, c.Fetched.Local().Format(time.DateTime))
			default:
				fmt.Fprintf(tw, "  config\t%s\tnone rolled out yet\n", c.Doc)
			}
			if c.BadRev > 0 {
				fmt.Fprintf(tw, "  reverted\t%s\tetcd revision %d\tat %s\t%s\n", c.Doc, c.BadRev, c.BadSince.Local().Format(time.DateTime), abbrev.FirstLine(c.BadWhy))
			}
		}
		for _, row := range []struct {
			label string
			d     *state.Deploy
		}{{"active", s.Active}, {"queued", s.Queued}, {"last", s.Last}} {
			if row.d != nil {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", row.label, row.d.ID, row.d.Status, abbrev.SHA(row.d.SHA), detail(row.d))
			}
		}
	}
	return tw.Flush()
}

func markOf(m string) string {
	if m == "" {
		return "unmarked"
	}
	return m
}

// detail is the one thing worth knowing about a deploy in a table: its error, why it was
// skipped, or how long it took.
func detail(d *state.Deploy) string {
	switch {
	case d.Error != "":
		return abbrev.FirstLine(d.Error)
	case d.Note != "":
		return d.Note
	case !d.Finished.IsZero() && !d.Started.IsZero():
		return "took " + d.Finished.Sub(d.Started).Round(time.Millisecond).String()
	}
	return ""
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
