package machine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"ftvm/internal/testsupport"
	"ftvm/snapshot"
	"ftvm/vm"
)

// resident counts the pages of b that the kernel has mapped: a page the
// process never touched is not, and one it only read is (the shared zero
// page, or with transparent huge pages a whole 2 MiB page).
func resident(t *testing.T, b []byte) int {
	t.Helper()
	ps := uintptr(os.Getpagesize())
	// mincore wants a page-aligned start.
	start := uintptr(unsafe.Pointer(&b[0]))
	aligned := start &^ (ps - 1)
	length := uintptr(len(b)) + start - aligned
	vec := make([]byte, (length+ps-1)/ps)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, aligned, length, uintptr(unsafe.Pointer(&vec[0])))
	runtime.KeepAlive(b)
	if errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n * int(ps) / pageSize
}

// residentBound is the most RAM pages that may be mapped if the machine
// touched only the pages it ever wrote: each may bring its whole 2 MiB
// region in (transparent huge pages).
func residentBound(m *Machine) (written, bound int) {
	regions := map[int]bool{}
	m.writtenPages(func(p int) {
		written++
		regions[p/512] = true
	})
	return written, 512 * len(regions)
}

// vmRSS is the process's resident memory in bytes (VmRSS).
func vmRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// useAllOfRAM does everything that looks at a machine's whole RAM: the
// digest, a snapshot, a checkpoint, dirty logs, a state loaded in place,
// and (with readPages) a state transfer's page reads. It returns the snapshot.
func useAllOfRAM(t *testing.T, m *Machine, readPages bool) []byte {
	t.Helper()
	m.Digest()
	var snap bytes.Buffer
	if err := m.Save(&snap); err != nil {
		t.Fatal(err)
	}
	if readPages {
		pg := make([]byte, m.PageSize())
		for i := range m.Pages() {
			if err := m.ReadPage(i, pg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := m.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	l := m.TrackDirty()
	l.Collect(nil)
	l.Stop()
	// A state synchronisation: the state applied in place.
	var st bytes.Buffer
	if err := m.SaveState(&st); err != nil {
		t.Fatal(err)
	}
	if err := m.LoadState(&st); err != nil {
		t.Fatal(err)
	}
	m.Digest()
	return snap.Bytes()
}

func checkResident(t *testing.T, what string, m *Machine) {
	t.Helper()
	got := resident(t, m.ram)
	written, bound := residentBound(m)
	t.Logf("%s: %d MiB of RAM, %d pages written, %d mapped (at most %d allowed)", what, len(m.ram)>>20, written, got, bound)
	if got > bound {
		t.Errorf("%s: %d RAM pages are mapped, but only %d were ever written (bound %d): the machine read RAM it never wrote",
			what, got, written, bound)
	}
}

// withMemory rewrites a snapshot's machine section to claim mib MiB.
func withMemory(t *testing.T, snap []byte, mib int) []byte {
	t.Helper()
	secs, err := snapshot.Read(bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secs {
		if s.Name == "machine" {
			var b map[string]json.RawMessage
			if err := json.Unmarshal(s.Data, &b); err != nil {
				t.Fatal(err)
			}
			b["MemoryMiB"] = json.RawMessage(strconv.Itoa(mib))
			if secs[i].Data, err = json.Marshal(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	var out bytes.Buffer
	if err := snapshot.Write(&out, secs); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestUntouchedRAMIsNotRead: memory and time at exit follow the RAM the
// guest used, not the machine's size. On a 2 GiB machine and on a
// snapshot of it restored as a 16 GiB one, the digest, Save, ReadPage,
// Checkpoint and dirty logs leave every page never written unmapped
// (mincore), and the digest means the same on a fresh and a restored
// machine.
func TestUntouchedRAMIsNotRead(t *testing.T) {
	if !testsupport.InFreshProcess(t) {
		return // the Go heap of a process that ran other tests recycles memory by zeroing it
	}
	rss0 := vmRSS(t)
	m, err := New(Config{MemoryMiB: 2048, Kernel: fakeKernel(), Disk: vm.NewMemDisk(make([]byte, 1<<20))})
	if err != nil {
		t.Fatal(err)
	}
	// Device DMA into a few scattered pages, as a guest's disk reads do.
	for _, off := range []uint64{5 << 20, 700 << 20, 2047 << 20} {
		ramDMA{m}.WritePhys(RAMBase+off, []byte("written by a device"))
	}
	snap := useAllOfRAM(t, m, true)
	checkResident(t, "fresh 2 GiB machine", m)

	r, err := Restore(bytes.NewReader(snap), RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Digest().Sum != m.Digest().Sum {
		t.Errorf("the restored machine's digest differs from the original's: %v vs %v", r.Digest().Parts, m.Digest().Parts)
	}
	useAllOfRAM(t, r, true)
	checkResident(t, "restored 2 GiB machine", r)

	// The same snapshot claiming 16 GiB: allocation follows what the
	// snapshot holds.
	big, err := Restore(bytes.NewReader(withMemory(t, snap, 16384)), RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	useAllOfRAM(t, big, false)
	checkResident(t, "snapshot restored as 16 GiB", big)
	if grew := vmRSS(t) - rss0; grew > 1<<30 {
		t.Errorf("resident memory grew by %d MiB for machines that wrote a few pages", grew>>20)
	} else {
		t.Logf("resident memory grew by %d MiB", grew>>20)
	}
	// On a small machine: the pages taken as never written are zero, and
	// the digest is the one computed from scratch.
	small, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel()})
	if err != nil {
		t.Fatal(err)
	}
	for p := range small.Pages() {
		if !small.mayBeNonzero(p) && !isZero(small.ram[p*pageSize:(p+1)*pageSize]) {
			t.Fatalf("page %d holds data but is taken as never written", p)
		}
	}
	if got, want := ramPart(t, small), fullRAMDigest(small); got != want {
		t.Errorf("RAM digest %x, from scratch %x", got, want)
	}
}

// TestLinuxLargeMemory: the same with the real kernel running on a 2 GiB
// machine (CPU stores, page tables, early allocations): what is mapped
// follows what the guest wrote.
func TestLinuxLargeMemory(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	if !testsupport.InFreshProcess(t) {
		return
	}
	m, err := New(Config{MemoryMiB: 2048, Kernel: k, Initrd: i, Cmdline: poweroffCmdline,
		Disk: vm.NewMemDisk(make([]byte, 1<<20)), Net: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Run(8e6); r != StopLimit {
		t.Fatalf("stopped with %v at %d", r, m.Instret())
	}
	useAllOfRAM(t, m, true)
	checkResident(t, "Linux on 2 GiB after 8 M instructions", m)
	if got, want := m.Digest().Sum, m.Digest().Sum; got != want {
		t.Fatal("two digests in a row differ")
	}
}

// TestRestartReusesRAM: a guest that reboots gets its machine's memory
// back, cleared where it was written, instead of memory from the Go heap
// (which zeroes recycled memory and so makes all of it resident); the new
// machine is the one New would build.
func TestRestartReusesRAM(t *testing.T) {
	if !testsupport.InFreshProcess(t) {
		return
	}
	cfg := Config{MemoryMiB: 2048, Kernel: fakeKernel()}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for off := uint64(3 << 20); off < 2048<<20; off += 300 << 20 {
		ramDMA{m}.WritePhys(RAMBase+off, []byte("written before the reboot"))
	}
	m.Digest()
	for range 3 {
		ram := m.ram
		if m, err = m.Restart(cfg); err != nil {
			t.Fatal(err)
		}
		if &m.ram[0] != &ram[0] {
			t.Fatal("the restarted machine runs in new memory")
		}
	}
	fresh, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest().Sum != fresh.Digest().Sum {
		t.Errorf("the restarted machine differs from a new one: %v vs %v", m.Digest().Parts, fresh.Digest().Parts)
	}
	for off := uint64(3 << 20); off < 2048<<20; off += 300 << 20 {
		if !isZero(m.ram[off : off+pageSize]) {
			t.Errorf("RAM at %#x still holds what the guest wrote before the reboot", RAMBase+off)
		}
	}
	checkResident(t, "restarted 2 GiB machine", m)
}
