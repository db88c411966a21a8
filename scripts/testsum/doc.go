// Command testsum runs a `go test -json` command line and prints what a CI log wants from
// it: go test's line per package (ok, FAIL, no test files), the output of every test that
// failed (and of a failed package outside its tests: a panic, a timeout, a build error),
// the tests that were skipped, and a closing line alone, as CI readers recognize it:
//
//	tests: 812 passed, 0 failed, 0 skipped
//
// Tests and subtests count alike. It exits non-zero when the command does or a test
// failed, and, with CI=true in the environment, when a test was skipped: a CI machine
// provides every component, so a skip there means a test that never ran.
//
//	go run ./scripts/testsum go test -race -count=1 -json ./...
package main
