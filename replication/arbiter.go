package replication

import "ftvm/arbiter"

// The pair's view and the arbiter that stores it are package arbiter's:
// a compare-and-swap on etcd, which a replica must win before it acts
// alone.
type (
	View    = arbiter.View
	Arbiter = arbiter.Arbiter
)
