//go:build !linux

package migrate

// prefault does nothing where MADV_POPULATE_READ does not exist.
func prefault(ram []byte) {}
