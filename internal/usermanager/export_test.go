package usermanager

// The tests are in package usermanager_test because they end through testenv.Unavailable,
// and testenv imports this package. These give them the internals they check.

// Dir is the directory m keeps its files in.
func Dir(m *Manager) string { return m.dir }
