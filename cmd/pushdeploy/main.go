package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// exitConfig is the exit status for a configuration that cannot be used: EX_CONFIG of
// sysexits.h, which pushdeploy.service names in RestartPreventExitStatus= (restarting
// does not fix a configuration). Any other error exits 1.
const exitConfig = 78

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushdeploy:", err)
		if errors.As(err, new(configError)) {
			os.Exit(exitConfig)
		}
		os.Exit(1)
	}
}
