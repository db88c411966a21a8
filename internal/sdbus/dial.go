package sdbus

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/godbus/dbus/v5"
)

// Dial connects to a D-Bus address as this process's own user: EXTERNAL authentication
// with our uid (no user name lookup, no cookie file), then Hello. go-systemd's
// NewUserConnection finds the bus through the process environment instead, which a
// process serving several managers must not change.
func Dial(addr string) (*dbus.Conn, error) {
	c, err := dbus.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		c.Close()
		return nil, fmt.Errorf("authenticate to %s: %w", addr, err)
	}
	if err := c.Hello(); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello to %s: %w", addr, err)
	}
	return c, nil
}

// NoSuchUnit reports whether err is systemd's answer for a unit it has not loaded.
func NoSuchUnit(err error) bool {
	var e dbus.Error // godbus returns a method's error by value
	return errors.As(err, &e) && e.Name == "org.freedesktop.systemd1.NoSuchUnit"
}
