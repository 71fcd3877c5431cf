//go:build !linux

package netdev

import "errors"

// TAP is only available on Linux.
type TAP struct{ PipeEnd }

// OpenTAP is only available on Linux.
func OpenTAP(name string) (*TAP, error) { return nil, errors.New("netdev: TAP needs Linux") }

// Name is empty outside Linux.
func (t *TAP) Name() string { return "" }
