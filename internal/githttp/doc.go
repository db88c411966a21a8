// Package githttp holds what the test harness's and the benchmark's git servers share:
// the environment git runs with (no system or user configuration, no prompt, C locale),
// and a response writer that counts the bytes a fetch puts on the wire.
package githttp
