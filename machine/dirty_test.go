package machine

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/vm"
)

// fullRAMDigest hashes RAM from scratch the way ramDigest does
// incrementally, touching no machine state.
// fullRAMDigest computes the RAM digest from scratch: the hash of the
// hashes of each group of 64 page hashes.
func fullRAMDigest(m *Machine) [32]byte {
	d := sha256.New()
	n := len(m.ram) / pageSize
	for g := 0; g < n; g += 64 {
		gd := sha256.New()
		for p := g; p < min(g+64, n); p++ {
			s := sha256.Sum256(m.ram[p*pageSize : (p+1)*pageSize])
			gd.Write(s[:])
		}
		d.Write(gd.Sum(nil))
	}
	return sum(d)
}

func ramPart(t *testing.T, m *Machine) [32]byte {
	t.Helper()
	for _, p := range m.Digest().Parts {
		if p.Name == "ram" {
			return p.Sum
		}
	}
	t.Fatal("digest has no ram part")
	return [32]byte{}
}

// TestDirtyLogsShareWrites runs a booting Linux guest (CPU stores and
// virtio DMA) with three consumers of dirty pages collecting at different
// moments: the digest and two dirty logs. Each must see every page that
// changed since it last collected, whatever the others collected in
// between. A collect that cleared the hart's bitmap without handing its
// bits to the other consumers would make the digest differ from one taken
// from scratch, or leave a changed page out of a log.
func TestDirtyLogsShareWrites(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Net: true,
		Disk: vm.NewMemDisk(make([]byte, 1<<20))})
	if err != nil {
		t.Fatal(err)
	}
	m.Run(5e6)
	m.Digest()
	logs := []struct {
		prev []byte // RAM when this log last collected
		log  interface {
			Collect([]uint64) []uint64
		}
		seen int
	}{
		{append([]byte(nil), m.ram...), m.TrackDirty(), 0},
		{append([]byte(nil), m.ram...), m.TrackDirty(), 0},
	}
	check := func(n int) {
		l := &logs[n]
		bm := l.log.Collect(nil)
		for p := 0; p < m.Pages(); p++ {
			changed := !bytes.Equal(l.prev[p*pageSize:(p+1)*pageSize], m.ram[p*pageSize:(p+1)*pageSize])
			if changed && bm[p/64]&(1<<(p%64)) == 0 {
				t.Fatalf("log %d at %d instructions: page %d changed but is not in the log", n, m.Instret(), p)
			}
			if changed {
				l.seen++
			}
		}
		copy(l.prev, m.ram)
	}
	// Interleave the consumers in an irregular order.
	steps := "d0d1d01d10dd1100d"
	for _, c := range steps {
		m.Run(m.Instret() + 2e6)
		switch c {
		case 'd':
			if got, want := ramPart(t, m), fullRAMDigest(m); got != want {
				t.Fatalf("at %d instructions the incremental RAM digest differs from a full one", m.Instret())
			}
		case '0', '1':
			check(int(c - '0'))
		}
	}
	if logs[0].seen == 0 || logs[1].seen == 0 {
		t.Fatalf("the guest changed no pages (%d, %d): the test proves nothing", logs[0].seen, logs[1].seen)
	}

	// A stopped log keeps no bits, and the others go on.
	l := m.TrackDirty()
	l.Stop()
	if len(m.dirtyLogs) != 2 {
		t.Fatalf("%d dirty logs after Stop, want 2", len(m.dirtyLogs))
	}
	m.Run(m.Instret() + 2e6)
	check(0)
	if got, want := ramPart(t, m), fullRAMDigest(m); got != want {
		t.Fatal("RAM digest wrong after a log stopped")
	}
}

// TestSaveStateRestoreState saves a running guest without RAM and disk
// contents, restores it with a copy of RAM and the disk, and requires the
// same digest at once and the same run to power-off. Bad combinations are
// refused with errors naming what is wrong.
func TestSaveStateRestoreState(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var conA, conB bytes.Buffer
	diskA := vm.NewMemDisk(make([]byte, 1<<20))
	a, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Net: true, Disk: diskA,
		Outputs: Outputs{Console: func(_ uint64, b []byte) { conA.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	a.Run(30e6)
	var st bytes.Buffer
	if err := a.SaveState(&st); err != nil {
		t.Fatal(err)
	}
	if st.Len() > 64<<10 {
		t.Errorf("state-only snapshot has %d bytes: RAM or disk got in", st.Len())
	}
	ram := make([]byte, a.Pages()*a.PageSize())
	for p := 0; p < a.Pages(); p++ {
		if err := a.ReadPage(p, ram[p*pageSize:(p+1)*pageSize]); err != nil {
			t.Fatal(err)
		}
	}
	diskB := vm.NewMemDisk(append([]byte(nil), diskA.Bytes()...))
	mark := conA.Len()

	for _, c := range []struct {
		name string
		ram  []byte
		opts RestoreOptions
		want string
	}{
		{"short RAM", ram[:len(ram)-pageSize], RestoreOptions{Disk: diskB}, "RAM image"},
		{"no RAM", nil, RestoreOptions{Disk: diskB}, "without a RAM image"},
		{"no disk", ram, RestoreOptions{}, "no disk backend"},
		{"wrong disk size", ram, RestoreOptions{Disk: vm.NewMemDisk(make([]byte, 2<<20))}, "the given disk has"},
	} {
		if _, err := RestoreState(bytes.NewReader(st.Bytes()), c.ram, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if _, err := Restore(bytes.NewReader(st.Bytes()), RestoreOptions{}); err == nil || !strings.Contains(err.Error(), `no "ram" section`) {
		t.Errorf("Restore of a state-only snapshot: %v", err)
	}
	var full bytes.Buffer
	if err := a.Save(&full); err != nil {
		t.Fatal(err)
	}
	if _, err := RestoreState(bytes.NewReader(full.Bytes()), ram, RestoreOptions{Disk: diskB}); err == nil || !strings.Contains(err.Error(), "state-only restore of a snapshot with") {
		t.Errorf("RestoreState of a full snapshot: %v", err)
	}

	b, err := RestoreState(bytes.NewReader(st.Bytes()), ram, RestoreOptions{Disk: diskB,
		Outputs: Outputs{Console: func(_ uint64, p []byte) { conB.Write(p) }}})
	if err != nil {
		t.Fatal(err)
	}
	if da, db := a.Digest(), b.Digest(); da.Sum != db.Sum {
		t.Fatalf("restored machine's digest differs: %v vs %v", db.Parts, da.Parts)
	}
	ra, rb := a.Run(2e9), b.Run(2e9)
	if ra != StopPowerOff || rb != StopPowerOff || a.Instret() != b.Instret() {
		t.Fatalf("original stopped with %v at %d, restored with %v at %d", ra, a.Instret(), rb, b.Instret())
	}
	if conA.String()[mark:] != conB.String() {
		t.Errorf("console after the save differs")
	}
	if a.Digest().Sum != b.Digest().Sum {
		t.Errorf("final digests differ")
	}
}
