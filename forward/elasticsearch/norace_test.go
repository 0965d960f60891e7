//go:build !race

package elasticsearch

const raceEnabled = false
