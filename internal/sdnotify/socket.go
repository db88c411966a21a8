package sdnotify

import (
	"fmt"
	"net"
)

// Notifier sends one sd_notify message: newline-separated assignments such as "READY=1"
// or "STATUS=idle". The Supervisor is its one user; tests give it a fake.
type Notifier interface {
	Notify(state string) error
}

// Socket is the notification socket systemd passes a service in NOTIFY_SOCKET: a path, or
// an abstract socket name starting with "@". Each message is one datagram on a connection
// of its own, as sd_notify(3) sends it, so Socket is safe for concurrent use.
//
// go-systemd's daemon.SdNotify does the same but reads NOTIFY_SOCKET at every call, which
// would keep the variable in the environment every child process inherits; the agent's
// CLI reads it once, removes it, and passes the address here.
type Socket string

// Notify sends state as one datagram. It fails when nothing listens on the socket or the
// datagram cannot be sent whole.
func (s Socket) Notify(state string) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: string(s), Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
