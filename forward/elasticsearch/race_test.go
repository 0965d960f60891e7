//go:build race

package elasticsearch

// raceEnabled is set when the race detector is on: tests then do less.
const raceEnabled = true
