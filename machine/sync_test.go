package machine

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
	"ftvm/snapshot"
	"ftvm/vm"
)

// TestLoadStateWritePage brings a machine that booted the default guest
// only part of the way to the state of one that booted further, in place:
// the RAM pages that differ through WritePage, the rest through LoadState.
// The two must then have the same digest and run the same way to
// power-off. States that do not fit, or that the restore code refuses,
// must leave the machine unchanged.
func TestLoadStateWritePage(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var conA, conB bytes.Buffer
	build := func(con *bytes.Buffer, net bool) *Machine {
		m, err := New(Config{Kernel: k, Initrd: i, Cmdline: poweroffCmdline, Net: net,
			Disk:    vm.NewMemDisk(make([]byte, 1<<20)),
			Outputs: Outputs{Console: func(_ uint64, b []byte) { con.Write(b) }}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := build(&conA, true), build(&conB, true)
	a.Run(30e6)
	b.Run(12e6)
	var st bytes.Buffer
	if err := a.SaveState(&st); err != nil {
		t.Fatal(err)
	}
	before := b.Digest()

	// Refusals, each leaving b as it was.
	other := build(new(bytes.Buffer), false)
	other.Run(1e6)
	var otherState bytes.Buffer
	other.SaveState(&otherState)
	var full bytes.Buffer
	a.Save(&full)
	torn := st.Bytes()[:st.Len()-1]
	badHart := rewriteSection(t, a, "hart", func(v map[string]any) { v["Priv"] = 2 })
	badQueue := rewriteSection(t, a, "virtio-net", func(v map[string]any) {
		q := v["Transport"].(map[string]any)["Queues"].([]any)[0].(map[string]any)
		q["Ready"], q["Size"] = true, 3 // not a power of two
	})
	for _, c := range []struct {
		name  string
		state []byte
		want  string
	}{
		{"another board", otherState.Bytes(), "another machine"},
		{"a full snapshot", full.Bytes(), `"ram" section`},
		{"a torn state", torn, "load state"},
		{"an invalid hart state", badHart, "privilege"},
		{"an invalid queue", badQueue, "virtio-net"},
	} {
		err := b.LoadState(bytes.NewReader(c.state))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if b.Digest().Sum != before.Sum || b.Instret() != 12e6 {
			t.Fatalf("%s: the refused state changed the machine", c.name)
		}
	}

	pa, pb := make([]byte, pageSize), make([]byte, pageSize)
	written := 0
	for p := range a.Pages() {
		a.ReadPage(p, pa)
		b.ReadPage(p, pb)
		if !bytes.Equal(pa, pb) {
			if err := b.WritePage(p, pa); err != nil {
				t.Fatal(err)
			}
			written++
		}
	}
	if err := b.WritePage(b.Pages(), pa); err == nil {
		t.Error("WritePage past the end of RAM succeeded")
	}
	if err := b.LoadState(bytes.NewReader(st.Bytes())); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pages written, state of %d bytes loaded", written, st.Len())
	if da, db := a.Digest(), b.Digest(); da.Sum != db.Sum || a.Instret() != b.Instret() {
		t.Fatalf("after loading, digests differ: %v vs %v", db.Parts, da.Parts)
	}
	mark := conA.Len()
	conB.Reset()
	ra, rb := a.Run(2e9), b.Run(2e9)
	if ra != StopPowerOff || rb != StopPowerOff || a.Instret() != b.Instret() {
		t.Fatalf("a stopped with %v at %d, b with %v at %d", ra, a.Instret(), rb, b.Instret())
	}
	if conA.String()[mark:] != conB.String() {
		t.Errorf("console after the load differs:\n%q\n%q", conA.String()[mark:], conB.String())
	}
	if a.Digest().Sum != b.Digest().Sum {
		t.Errorf("final digests differ")
	}
}

// rewriteSection returns m's SaveState with one section's JSON edited.
func rewriteSection(t *testing.T, m *Machine, name string, edit func(map[string]any)) []byte {
	t.Helper()
	secs, err := m.stateSections()
	if err != nil {
		t.Fatal(err)
	}
	for i := range secs {
		if secs[i].Name != name {
			continue
		}
		// Numbers stay exact (json.Number): a register holding a value
		// above 2^53 must not be rounded into one that no longer fits.
		var v map[string]any
		dec := json.NewDecoder(bytes.NewReader(secs[i].Data))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		edit(v)
		secs[i].Data, _ = json.Marshal(v)
	}
	var out bytes.Buffer
	if err := snapshot.Write(&out, secs); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestInjectBitFlip: a flipped bit changes the digest and is reported by
// no dirty log; flipping it back restores the digest; the guest reads the
// flipped value.
func TestInjectBitFlip(t *testing.T) {
	m, err := New(Config{MemoryMiB: 16, ELF: crossCompile(t, "htif.S", "EXIT_CODE=0")})
	if err != nil {
		t.Fatal(err)
	}
	log := m.TrackDirty()
	before := m.Digest().Sum
	const page = 100
	if err := m.InjectBitFlip(page, 17, 3); err != nil {
		t.Fatal(err)
	}
	if m.ram[page*pageSize+17] != 1<<3 {
		t.Fatalf("RAM byte is %#x after the flip", m.ram[page*pageSize+17])
	}
	if m.Digest().Sum == before {
		t.Error("the digest did not change")
	}
	if n := bitmapOnes(log.Collect(nil)); n != 0 {
		t.Errorf("a dirty log reports %d pages after a bit flip", n)
	}
	m.InjectBitFlip(page, 17, 3)
	if m.Digest().Sum != before {
		t.Error("flipping back did not restore the digest")
	}
	for _, bad := range [][3]int{{-1, 0, 0}, {m.Pages(), 0, 0}, {0, pageSize, 0}, {0, 0, 8}} {
		if m.InjectBitFlip(bad[0], bad[1], bad[2]) == nil {
			t.Errorf("InjectBitFlip%v succeeded", bad)
		}
	}

	// The program's last "li t1, 1" (c.li, 0x4305) makes its exit status
	// 0. Once its code page is decoded, flip immediate bit 1: the program
	// must exit with 1, not run the stale decode.
	m.Run(20)
	text := m.ram[:pageSize]
	at := bytes.LastIndex(text, []byte{0x05, 0x43})
	if at < 0 {
		t.Fatal("no c.li t1, 1 in the program")
	}
	m.InjectBitFlip(0, at, 3)
	if r := m.Run(1e7); r != StopPowerOff || m.ExitCode() != 1 {
		t.Errorf("after flipping the exit status in the code, the program stopped with %v, status %d; want poweroff, 1", r, m.ExitCode())
	}
}

func bitmapOnes(b []uint64) int {
	n := 0
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}
