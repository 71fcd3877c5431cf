//go:build race

package machine

// raceTest shortens the multi-hart programs under the race detector,
// which makes every RAM access of parallel harts a host atomic and the
// interpreter several times slower.
const raceTest = true
