package vm

// The host backends of a machine's devices. They are named here, at the
// seam, and not by the device models, so that host code (the disk files,
// the TAP device, the switch port) and everything that handles backends
// (replication, state transfer) can name them without linking the device
// models.

// Disk is the disk image behind a machine's block device, as the device
// reads and writes it. Size must not change while the device exists.
// Both replicas of a pair hold identical images, so data read need not
// be logged.
type Disk interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	Size() int64
}

// NetBackend receives the frames a machine's network device transmits.
// Transmit is called synchronously for each frame (without the device's
// header) and must not retain frame.
type NetBackend interface {
	Transmit(frame []byte)
}
