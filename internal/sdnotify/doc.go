// Package sdnotify tells systemd how the agent is doing, over the sd_notify protocol of a
// Type=notify service: READY=1 once it serves, STATUS= saying what it does, STOPPING=1 when
// it begins to shut down, and, when the unit sets WatchdogSec=, WATCHDOG=1 pings sent only
// while every liveness check the agent gives it passes, so that systemd restarts an agent
// that is wedged rather than one that merely still runs.
//
// It owns the notification socket's protocol (Socket) and the loop that sends (Supervisor);
// what is checked and what the status says are the agent's, passed in as functions. It
// reads no environment: cmd/pushdeploy reads NOTIFY_SOCKET and WATCHDOG_USEC and passes
// their values in. Outside systemd there is no Supervisor at all.
package sdnotify
