//go:build race

package agent

// raceDetector is set when the tests run with -race, whose shadow memory is never given
// back: RSS then says nothing about what the agent holds.
const raceDetector = true
