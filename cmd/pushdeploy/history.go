package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/state"
)

func newHistoryCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "history APP [DEPLOY_ID]",
		Short: "List an app's deploys, or show one with its log",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _, done, err := connect(cmd.Context(), configPath)
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			if len(args) == 2 {
				d, log, err := b.Deploy(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(out, map[string]any{"deploy": d, "log": string(log)})
				}
				return printDeploy(out, d, log)
			}
			hist, err := b.History(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, hist)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tSHA\tBRANCH\tQUEUED\tDETAIL")
			for _, d := range hist {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, kind(&d), d.Status, abbrev.SHA(d.SHA), d.Branch,
					d.Queued.Local().Format(time.DateTime), detail(&d))
			}
			return tw.Flush()
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "show at most this many deploys (0: all kept)")
	return cmd
}

func printDeploy(w io.Writer, d *state.Deploy, log []byte) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format(time.RFC3339)
	}
	row("deploy", d.ID)
	row("app", d.App)
	row("kind", kind(d))
	row("service", d.Service)
	row("status", string(d.Status))
	row("sha", d.SHA)
	row("branch", d.Branch)
	row("previous", d.Previous)
	row("delivery", d.Delivery)
	row("pusher", d.Pusher)
	row("message", d.Message)
	row("queued", ts(d.Queued))
	row("started", ts(d.Started))
	row("finished", ts(d.Finished))
	if d.FetchBytes > 0 {
		row("fetched", fmt.Sprintf("%d bytes", d.FetchBytes))
	}
	if d.ConfigRev > 0 {
		row("config", fmt.Sprintf("etcd revision %d (from %s)", d.ConfigRev, d.ConfigSource))
	}
	row("note", d.Note)
	row("error", d.Error)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(log) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nlog:")
	return printLog(w, log)
}

// printLog shows a deploy's log (JSON lines) the way the agent shows it on a terminal.
func printLog(w io.Writer, log []byte) error {
	lw := newLogWriter(w, false)
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	for sc.Scan() {
		if err := lw.write(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// kind is what the record did; records from before kinds existed are deploys.
func kind(d *state.Deploy) string {
	if d.Kind == "" {
		return state.KindDeploy
	}
	return d.Kind
}
