package machine

import (
	"bytes"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/virtio"
)

// TestVirtioFloodBounded runs a hostile bare-metal guest that makes 64 MiB
// of block reads available at once and notifies in a loop (a notification
// used to copy all of it, however long that took the host). The device
// work done in any slice of guest execution is bounded by the device's
// pace, every request still completes, and when the work is done depends
// only on the guest: Run in one call and in odd slices ends at the same
// instruction count with the same digest.
func TestVirtioFloodBounded(t *testing.T) {
	elf := crossCompile(t, "virtio_flood.S")
	run := func(slice uint64) (uint64, [32]byte, int64) {
		disk := testsupport.NewDisk(bytes.Repeat([]byte{0xa5}, virtio.MaxBlockRequest))
		m, err := New(Config{MemoryMiB: 32, ELF: elf, Disk: disk})
		if err != nil {
			t.Fatal(err)
		}
		var most int64
		for {
			before := disk.BytesRead
			r := m.Run(m.Instret() + slice)
			most = max(most, disk.BytesRead-before)
			if r == StopPowerOff {
				break
			}
			if r != StopLimit || m.Instret() > 1e9 {
				t.Fatalf("stopped with %v at %d", r, m.Instret())
			}
		}
		if m.ExitCode() != 0 {
			t.Fatalf("the guest saw a failed request (exit code %d)", m.ExitCode())
		}
		return m.Instret(), m.Digest().Sum, most
	}
	const slice = 100_000
	n, digest, most := run(slice)
	bound := int64(deviceBurst + virtio.MaxBlockRequest + slice/10*deviceBytesPerTick)
	t.Logf("8 requests of 8 MiB done after %d instructions; at most %d bytes read from the disk in a slice of %d instructions (bound %d)",
		n, most, slice, bound)
	if most > bound {
		t.Errorf("the guest made the device read %d bytes in %d instructions, more than its pace allows (%d)", most, slice, bound)
	}
	for _, s := range []uint64{1e10, 77_777} {
		if n2, d2, _ := run(s); n2 != n || d2 != digest {
			t.Errorf("in slices of %d: done at %d with digest %x, in slices of %d: at %d with %x", s, n2, d2, slice, n, digest)
		}
	}
}
