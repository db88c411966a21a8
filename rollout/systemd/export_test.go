package systemd

// Unconnected is a Manager of the unit directory dir with no connection, for tests of what
// must be refused before anything is written or asked of systemd: any D-Bus call panics.
func Unconnected(dir string) *Manager { return &Manager{cfg: Config{UnitDir: dir}} }
