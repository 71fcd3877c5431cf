package machine

import (
	"bytes"
	"strings"
	"testing"

	"ftvm/devices"
	"ftvm/fdt"
	"ftvm/vm"
)

// TestSharedDisk: the read-only shared disk is a third virtio slot after
// the disk and the NIC, it is never in a snapshot, and a restore needs the
// same image (by size and identity).
func TestSharedDisk(t *testing.T) {
	shared := vm.NewMemDisk(bytes.Repeat([]byte{0xa5}, 8<<20))
	id := [32]byte{1, 2, 3}
	cfg := Config{MemoryMiB: 64, Kernel: fakeKernel(), Net: true,
		Disk: vm.NewMemDisk(make([]byte, 1<<20)), SharedDisk: shared, SharedDiskID: id, WallClock: 1_765_000_000e9}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := fdt.Parse(m.dtb)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"/soc/virtio_mmio@10001000", "/soc/virtio_mmio@10002000", "/soc/virtio_mmio@10003000", "/soc/rtc@101000"} {
		if root.Find(n) == nil {
			t.Errorf("device tree: no %s", n)
		}
	}
	// The shared disk's transport offers VIRTIO_BLK_F_RO (bit 5).
	tr := uint64(VirtioBase + 2*VirtioSize)
	if v, _ := m.Load(tr+0x008, 4); v != 2 {
		t.Fatalf("slot 2 device id %d, want 2 (block)", v)
	}
	m.Store(tr+0x014, 4, 0) // DeviceFeaturesSel
	if f, _ := m.Load(tr+0x010, 4); f&(1<<5) == 0 {
		t.Errorf("shared disk features %#x: no VIRTIO_BLK_F_RO", f)
	}

	var snap bytes.Buffer
	if err := m.Save(&snap); err != nil {
		t.Fatal(err)
	}
	if snap.Len() > 4<<20 {
		t.Errorf("snapshot of %d bytes: the shared disk's contents got in", snap.Len())
	}
	for _, c := range []struct {
		name string
		opts RestoreOptions
		want string
	}{
		{"no shared disk", RestoreOptions{}, "none was given"},
		{"another image", RestoreOptions{SharedDisk: shared, SharedDiskID: [32]byte{9}}, "the given shared disk is"},
		{"another size", RestoreOptions{SharedDisk: vm.NewMemDisk(make([]byte, 4<<20)), SharedDiskID: id}, "bytes, the machine's"},
	} {
		if _, err := Restore(bytes.NewReader(snap.Bytes()), c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	r, err := Restore(bytes.NewReader(snap.Bytes()), RestoreOptions{SharedDisk: shared, SharedDiskID: id})
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasSharedDisk() || r.Digest().Sum != m.Digest().Sum {
		t.Errorf("restored machine differs: shared disk %v, digest parts %v vs %v", r.HasSharedDisk(), r.Digest().Parts, m.Digest().Parts)
	}
}

// TestRTCFollowsTheGuestClock: the real-time clock shows the configured
// origin plus the guest's elapsed time, so it is a function of the
// instruction count and the time advances, and survives a snapshot.
func TestRTCFollowsTheGuestClock(t *testing.T) {
	const origin = 1_765_000_000_000_000_000
	m, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel(), WallClock: origin})
	if err != nil {
		t.Fatal(err)
	}
	read := func(m *Machine) uint64 {
		lo, _ := m.Load(devices.RTCBase, 4)
		hi, _ := m.Load(devices.RTCBase+4, 4)
		return hi<<32 | lo
	}
	if got := read(m); got != origin {
		t.Fatalf("RTC at boot %d, want %d", got, origin)
	}
	m.Deliver(AdvanceTime{To: 5 * TimebaseHz}) // five guest seconds
	if got := read(m); got != origin+5e9 {
		t.Fatalf("RTC after 5 s %d, want %d", got, uint64(origin+5e9))
	}
	var snap bytes.Buffer
	if err := m.Save(&snap); err != nil {
		t.Fatal(err)
	}
	r, err := Restore(&snap, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := read(m), read(r); a != b {
		t.Fatalf("restored RTC %d, original %d", b, a)
	}
}
