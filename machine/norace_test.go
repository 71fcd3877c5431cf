//go:build !race

package machine

const raceTest = false
