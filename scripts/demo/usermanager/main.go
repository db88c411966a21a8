package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/pushdeploy/pushdeploy/internal/usermanager"
)

func main() {
	dir := flag.String("dir", "", "directory for the manager's home, units and journal (default: a temporary one, removed at exit)")
	watchStdin := flag.Bool("stdin", true, "stop at end of file on standard input")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var stdin io.Reader
	if *watchStdin {
		stdin = os.Stdin
	}
	err := run(ctx, *dir, stdin, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, usermanager.ErrUnavailable):
		fmt.Fprintln(os.Stderr, "usermanager:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "usermanager:", err)
		os.Exit(1)
	}
}

// run starts the manager, prints where it is, waits for ctx to end or stdin (when not nil)
// to reach end of file, and stops the manager.
func run(ctx context.Context, dir string, stdin io.Reader, stdout, stderr io.Writer) error {
	m, err := usermanager.Start(usermanager.Options{
		Dir:  dir,
		Logf: func(format string, args ...any) { fmt.Fprintf(stderr, "usermanager: "+format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bus=%s\nunit_dir=%s\njournal_dir=%s\nruntime_dir=%s\n", m.BusAddress, m.UnitDir, m.JournalDir, m.RuntimeDir)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if stdin != nil {
		// A read cannot be interrupted: this goroutine ends at end of file, or with the
		// process.
		go func() {
			io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	fmt.Fprintf(stderr, "usermanager: systemd user manager running (launcher pid %d); SIGTERM, SIGINT or end of input stops it\n", m.PID())
	<-ctx.Done()
	if err := m.Stop(); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "usermanager: stopped")
	return nil
}
