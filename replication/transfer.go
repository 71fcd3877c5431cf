package replication

import "io"

// The state transfer that brings a joining backup to the primary's state is
// package migrate's live pre-copy: the primary calls Step between epochs
// while the guest runs, and Finish with the guest stopped; the backup's
// Receive builds the engine. The transferred state is named, in the log's
// header, by the engine's digest at the instruction where the log starts.

// connRW reads through the buffered reader that already holds what the
// peer sent after the handshake, and writes straight to the connection.
type connRW struct {
	io.Reader
	io.Writer
}

// maxGuestMemory bounds the RAM a backup accepts to allocate for a
// transferred state.
const maxGuestMemory = 64 << 30
