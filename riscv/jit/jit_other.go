//go:build !(linux && amd64)

package jit

import (
	"errors"

	"ftvm/riscv"
)

// JIT is the translator; on this host there is none.
type JIT struct{ Stats Stats }

// Stats counts what the translator did.
type Stats struct {
	Blocks, GuestInsns, CodeBytes, Flushes, Suspended, Verified, Invalidated, Entries, Native, Links uint64
	TranslateNanos                                                                                   int64
	CodePeak                                                                                         uint64
}

// Clock would time translation.
var Clock func() int64

// Available reports whether translation is supported on this host: it
// needs linux on amd64.
func Available() bool { return false }

// New fails: the translator generates x86-64 code for Linux.
func New(h *riscv.Hart) (*JIT, error) {
	return nil, errors.New("jit: the translator needs linux on amd64")
}
