// Package procgroup runs a program the agent does not trust to clean up after itself (a
// deploy script) in a process group of its own, so that nothing it starts outlives it.
package procgroup
