package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/state"
)

func newLogsCmd() *cobra.Command {
	var configPath string
	var followLog, asJSON bool
	cmd := &cobra.Command{
		Use:   "logs APP [DEPLOY_ID]",
		Short: "Print the log of an app's last deploy (or of DEPLOY_ID); -f follows it to its end",
		Long: "logs prints a deploy's log: the app's newest deploy, or the one named. With -f it " +
			"follows the log as the agent writes it until the deploy ends, and exits 0 when it " +
			"succeeded, non-zero otherwise (failed, stale, superseded).",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _, done, err := connect(cmd.Context(), configPath)
			if err != nil {
				return err
			}
			defer done()
			app, id := args[0], ""
			if len(args) == 2 {
				id = args[1]
			} else {
				hist, err := b.History(cmd.Context(), app, 1)
				if err != nil {
					return err
				}
				if len(hist) == 0 {
					return fmt.Errorf("%s has no deploys yet", app)
				}
				id = hist[0].ID
			}
			out := cmd.OutOrStdout()
			if !followLog {
				_, log, err := b.Deploy(cmd.Context(), app, id)
				if err != nil {
					return err
				}
				if asJSON {
					_, err := out.Write(log)
					return err
				}
				return printLog(out, log)
			}
			lw := newLogWriter(out, asJSON)
			d, err := b.Follow(cmd.Context(), app, id, 0, func(line []byte, _ int64) error { return lw.write(line) })
			if err != nil {
				return err
			}
			return outcome(cmd.ErrOrStderr(), d)
		},
	}
	configFlag(cmd, &configPath)
	cmd.Flags().BoolVarP(&followLog, "follow", "f", false, "follow the log until the deploy ends; exit non-zero unless it succeeded")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the log's JSON lines as they are")
	return cmd
}

// logWriter prints a deploy's JSON log lines as the agent shows them on a terminal, or as
// they are.
type logWriter struct {
	w   io.Writer
	raw bool
	cw  zerolog.ConsoleWriter
}

func newLogWriter(w io.Writer, raw bool) *logWriter {
	return &logWriter{w: w, raw: raw, cw: zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: "15:04:05.000",
		FieldsExclude: []string{"app", "deploy", "component"}}}
}

func (l *logWriter) write(line []byte) error {
	line = append(line[:len(line):len(line)], '\n')
	if !l.raw && json.Valid(line) {
		if _, err := l.cw.Write(line); err == nil {
			return nil
		}
	}
	_, err := l.w.Write(line)
	return err
}

// outcome says how a deploy, restart or rollback ended: nil when it succeeded, an error
// saying why otherwise.
func outcome(w io.Writer, d *state.Deploy) error {
	switch d.Status {
	case state.StatusSucceeded:
		took := ""
		if !d.Started.IsZero() {
			took = " in " + d.Finished.Sub(d.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s %s succeeded%s; history: pushdeploy history %s %s\n", d.App, kind(d), took, d.App, d.ID)
		return nil
	case state.StatusFailed:
		return fmt.Errorf("%s %s failed (pushdeploy history %s %s): %s", kind(d), d.ID, d.App, d.ID, d.Error)
	}
	return fmt.Errorf("%s %s did not run: %s: %s", kind(d), d.ID, d.Status, d.Note)
}
