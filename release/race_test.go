//go:build race

package release_test

// raceDetector is set when the tests run with -race, whose shadow memory makes RSS
// figures meaningless.
const raceDetector = true
