package migrate

import (
	"bytes"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/machine"
	"ftvm/vm"
)

var guestMAC = [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}

// driver runs a machine with a key-value client on its NIC, delivering the
// client's frames between Run slices.
type driver struct {
	m       *machine.Machine
	c       *kvClient
	console bytes.Buffer
	out     [][]byte // frames the guest sent during the last slice
	backlog [][]byte // frames the NIC had no room for yet
}

func (d *driver) outputs() machine.Outputs {
	return machine.Outputs{
		Console: func(_ uint64, b []byte) { d.console.Write(b) },
		Net:     func(_ uint64, f []byte) { d.out = append(d.out, append([]byte(nil), f...)) },
	}
}

// step runs the machine for slice instructions. Idle time is not skipped
// blindly: when the guest idles, the client's frames are delivered at
// once, and only when there are none does the guest's clock move on to its
// next timer. The client thus answers with no guest time passing, as a
// fast peer would (with idle skipping, a slice of an idle guest can span
// seconds of guest time, and TCP and ARP time out between two slices).
func (d *driver) step(slice uint64) vm.StopReason {
	end := d.m.Instret() + slice
	for {
		delivered := d.deliver()
		r := d.m.Run(end)
		for _, f := range d.out {
			d.c.input(f, d.m.Instret())
		}
		d.out = nil
		if r != machine.StopIdle {
			return r
		}
		if delivered || len(d.c.pendingFrames) > 0 {
			continue
		}
		dl := d.m.Deadline()
		if dl == ^uint64(0) {
			return r
		}
		d.m.Deliver(machine.AdvanceTime{To: dl})
	}
}

// deliver hands the client's frames to the NIC and reports whether any
// were taken.
func (d *driver) deliver() bool {
	frames := append(d.backlog, d.c.poll(d.m.Instret())...)
	d.backlog = nil
	for i, f := range frames {
		if n, _ := d.m.Deliver(machine.NetReceive{Frame: f}); n == 0 {
			d.backlog = frames[i:]
			return i > 0
		}
	}
	return len(frames) > 0
}

// bootServing boots the default guest with a disk and a NIC until its
// key-value server has acknowledged a few writes from the client.
func bootServing(t testing.TB, disk *TrackedDisk, valueSize int) *driver {
	t.Helper()
	k, i := testsupport.DefaultGuest(t)
	d := &driver{c: newKVClient(guestMAC, valueSize)}
	m, err := machine.New(machine.Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0",
		Net: true, MAC: guestMAC, Disk: disk, Outputs: d.outputs()})
	if err != nil {
		t.Fatal(err)
	}
	m.SetIdleSkip(false)
	d.m = m
	for !strings.Contains(d.console.String(), "kvserver: listening") {
		if d.step(5e6) != machine.StopLimit || m.Instret() > 2e9 {
			t.Fatalf("the guest never started its key-value server:\n%s", d.console.String())
		}
	}
	d.c.connect(m.Instret())
	for d.c.oks < 3 {
		if d.step(1e6) != machine.StopLimit || m.Instret() > 3e9 || d.c.rst || d.c.errs > 0 {
			t.Fatalf("the key-value server did not acknowledge writes (%d ok, %d errors, reset %v):\n%s",
				d.c.oks, d.c.errs, d.c.rst, d.console.String())
		}
	}
	return d
}

// TestMigrateRunningGuest moves the default guest, booted and serving
// key-value writes that go to its disk, to a second machine over loopback
// TCP while the first keeps running (and writing) between Steps. The
// second machine, with a blank disk of its own, must end at the same
// instruction count with the same digest and the same disk bytes, and stay
// identical to the first when both run on with the same inputs.
func TestMigrateRunningGuest(t *testing.T) {
	const diskSize = 8 << 20
	srcDisk := TrackWrites(vm.NewMemDisk(make([]byte, diskSize)))
	src := bootServing(t, srcDisk, 8<<10)
	t.Logf("guest serving at %d instructions, %d writes acknowledged", src.m.Instret(), src.c.oks)

	a, b := tcpPair(t)
	dstDisk := vm.NewMemDisk(make([]byte, diskSize))
	dst := &driver{}
	res := receiveAsync(b, dstDisk, machine.MigrationFactory(machine.RestoreOptions{Disk: dstDisk, Outputs: dst.outputs()}), ReceiveOptions{})
	// Small steps and a low threshold make pre-copy take several rounds
	// with the guest writing in between.
	s, err := NewSender(a, src.m, srcDisk, Options{StepBytes: 1 << 20, ConvergePages: 64})
	if err != nil {
		t.Fatal(err)
	}
	oks, steps := src.c.oks, 0
	for done := false; !done; steps++ {
		if r := src.step(1e6); r != machine.StopLimit {
			t.Fatalf("the guest stopped (%v) during pre-copy", r)
		}
		if done, err = s.Step(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("%d steps; sender: %+v", steps, st)
	t.Logf("receiver: %+v", r.stats)
	if src.c.oks-oks == 0 {
		t.Error("the guest acknowledged no writes during pre-copy: the test proves less than it should")
	}
	if st.Rounds < 2 {
		t.Errorf("pre-copy took %d round: the test proves less than it should", st.Rounds)
	}
	if st.ChunksSent <= st.ChunksDiffer {
		t.Errorf("no disk chunk was sent again after the guest wrote it (%d sent, %d differing)", st.ChunksSent, st.ChunksDiffer)
	}

	dst.m = r.eng.(*machine.Machine)
	dst.m.SetIdleSkip(false)
	dst.c = src.c.clone()
	dst.backlog = append([][]byte(nil), src.backlog...)
	if dst.m.Instret() != src.m.Instret() || dst.m.Digest().Sum != src.m.Digest().Sum {
		t.Fatalf("after the transfer: receiver at %d, sender at %d; digests %v vs %v",
			dst.m.Instret(), src.m.Instret(), dst.m.Digest().Parts, src.m.Digest().Parts)
	}
	if !bytes.Equal(dstDisk.Bytes(), srcDisk.Unwrap().(*vm.MemDisk).Bytes()) {
		t.Fatal("the receiver's disk differs from the sender's")
	}

	// Both run on with the same inputs: the client keeps writing to each.
	mark := src.console.Len()
	oks = src.c.oks
	end := src.m.Instret() + 40e6
	for src.m.Instret() < end {
		ra, rb := src.step(1e6), dst.step(1e6)
		if ra != rb || src.m.Instret() != dst.m.Instret() {
			t.Fatalf("the machines stopped differently: %v at %d, %v at %d", ra, src.m.Instret(), rb, dst.m.Instret())
		}
	}
	if src.c.oks == oks {
		t.Error("no writes acknowledged after the transfer")
	}
	if src.c.oks != dst.c.oks || !bytes.Equal(src.c.replies, dst.c.replies) {
		t.Errorf("the clients saw different replies: %d vs %d acknowledged", src.c.oks, dst.c.oks)
	}
	if src.console.String()[mark:] != dst.console.String() {
		t.Errorf("console output after the transfer differs:\n--- sender\n%s\n--- receiver\n%s", src.console.String()[mark:], dst.console.String())
	}
	if da, db := src.m.Digest(), dst.m.Digest(); da.Sum != db.Sum {
		t.Fatalf("digests differ after running on: %v vs %v", da.Parts, db.Parts)
	}
	if !bytes.Equal(dstDisk.Bytes(), srcDisk.Unwrap().(*vm.MemDisk).Bytes()) {
		t.Fatal("the disks differ after running on")
	}
	t.Logf("both at %d instructions, %d writes acknowledged on each", src.m.Instret(), src.c.oks)
}
