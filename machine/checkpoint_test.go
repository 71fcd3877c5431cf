package machine

import (
	"bytes"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/vm"
)

// TestCheckpointRewind boots the default guest, takes checkpoints on the
// way, and checks that rewinding to any of them (in any order, newer and
// older) and running to a later count reproduces the state digest and
// console output of the uninterrupted run.
func TestCheckpointRewind(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var console bytes.Buffer
	var consoleAt []uint64 // console length at each count in marks
	disk := vm.NewMemDisk(make([]byte, 1<<20))
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0 ftvm.mode=poweroff", Disk: disk,
		Outputs: Outputs{Console: func(_ uint64, b []byte) { console.Write(b) }}})
	if err != nil {
		t.Fatal(err)
	}
	marks := []uint64{5e6, 12e6, 20e6, 33e6, 41e6}
	var cks []vm.Checkpoint
	var digests [][32]byte
	for _, at := range marks {
		if r := m.Run(at); r != StopLimit {
			t.Fatalf("stopped at %d: %v", m.Instret(), r)
		}
		c, err := m.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		cks = append(cks, c)
		digests = append(digests, m.Digest().Sum)
		consoleAt = append(consoleAt, uint64(console.Len()))
		// Disk writes between checkpoints: the rewind must undo them.
		m.disk.WriteAt(bytes.Repeat([]byte{byte(at >> 20)}, 3000), int64(at>>12)%(1<<20-4096))
	}
	full := console.String()
	for _, pair := range [][2]int{{3, 4}, {0, 2}, {4, 4}, {1, 3}, {0, 0}, {2, 4}} {
		from, to := pair[0], pair[1]
		if err := m.Rewind(cks[from]); err != nil {
			t.Fatal(err)
		}
		if got := m.Digest().Sum; got != digests[from] {
			t.Fatalf("after rewinding to %d: digest differs", marks[from])
		}
		console.Truncate(int(consoleAt[from]))
		m.disk.WriteAt([]byte("scribble"), 4096*7)
		if r := m.Run(marks[to]); r != StopLimit || m.Instret() != marks[to] {
			t.Fatalf("re-run to %d: %v at %d", marks[to], r, m.Instret())
		}
		if got := m.Digest().Sum; got != digests[to] {
			t.Errorf("rewound to %d, ran to %d: digest differs from the first run", marks[from], marks[to])
		}
		if !bytes.HasPrefix([]byte(full), console.Bytes()) || uint64(console.Len()) != consoleAt[to] {
			t.Errorf("rewound to %d, ran to %d: console differs", marks[from], marks[to])
		}
	}
	// The disk is back as it was at the checkpoint, scribbles undone.
	if err := m.Rewind(cks[1]); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	copy(want[int64(5e6>>12)%(1<<20-4096):], bytes.Repeat([]byte{byte(uint64(5e6) >> 20)}, 3000))
	if !bytes.Equal(disk.Bytes(), want) {
		t.Errorf("disk after rewinding to %d is not as it was then", marks[1])
	}
}

// TestCheckpointDiskReadError: a disk block that cannot be read while the
// machine keeps checkpoints is never taken for a block of zeros (which a
// rewind would write back over the data): the write that needed it fails,
// and so does the checkpoint.
func TestCheckpointDiskReadError(t *testing.T) {
	disk := testsupport.NewDisk(bytes.Repeat([]byte{'A'}, 4*pageSize))
	m, err := New(Config{Kernel: fakeKernel(), Disk: disk})
	if err != nil {
		t.Fatal(err)
	}
	ck0, err := m.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	block := func(b int) []byte { return disk.Bytes()[b*pageSize : (b+1)*pageSize] }
	b4k := bytes.Repeat([]byte{'B'}, pageSize)

	// A first write to block 0 needs its old contents, which cannot be read.
	disk.FailReads = true
	if n, err := m.disk.WriteAt(b4k, 0); err == nil {
		t.Errorf("a write whose old contents could not be read succeeded (%d bytes)", n)
	}
	disk.FailReads = false
	if err := m.Rewind(ck0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(block(0), bytes.Repeat([]byte{'A'}, pageSize)) {
		t.Errorf("block 0 after the rewind starts %q, want the original A's", block(0)[:8])
	}

	// Block 1 is written (readable then), and the next checkpoint cannot
	// read it.
	if _, err := m.disk.WriteAt(b4k, pageSize); err != nil {
		t.Fatal(err)
	}
	disk.FailReads = true
	ck1, err := m.Checkpoint()
	disk.FailReads = false
	if err == nil {
		if _, err := m.disk.WriteAt(bytes.Repeat([]byte{'C'}, pageSize), pageSize); err != nil {
			t.Fatal(err)
		}
		if err := m.Rewind(ck1); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(block(1), b4k) {
			t.Fatalf("checkpoint taken while block 1 could not be read; rewinding to it left block 1 starting %q, want B's", block(1)[:8])
		}
	} else {
		t.Logf("checkpoint refused: %v", err)
	}
	// The failed checkpoint changed nothing: the machine still rewinds to
	// the first one, and a later checkpoint works.
	if err := m.Rewind(ck0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(block(1), bytes.Repeat([]byte{'A'}, pageSize)) {
		t.Errorf("block 1 after rewinding to the first checkpoint starts %q, want A's", block(1)[:8])
	}
	if _, err := m.Checkpoint(); err != nil {
		t.Errorf("checkpoint once the disk reads again: %v", err)
	}
}
