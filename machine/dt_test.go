package machine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"ftvm/fdt"
	"ftvm/vm"
)

// fakeKernel is the smallest thing bootLinux accepts: an Image header.
func fakeKernel() []byte {
	k := make([]byte, 4096)
	copy(k[0x30:], "RISCV\x00\x00\x00")
	return k
}

// TestDeviceTreeDescribesMachine parses the generated blob back and checks
// it describes exactly the devices the machine has.
func TestDeviceTreeDescribesMachine(t *testing.T) {
	for _, withDisk := range []bool{false, true} {
		cfg := Config{MemoryMiB: 64, Kernel: fakeKernel(), Initrd: append([]byte("070701"), bytes.Repeat([]byte{1}, 4994)...), Cmdline: "console=ttyS0 x=1", Net: true}
		if withDisk {
			cfg.Disk = vm.NewMemDisk(make([]byte, 1<<20))
		}
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		root, err := fdt.Parse(m.dtb)
		if err != nil {
			t.Fatal(err)
		}
		mem := root.Find("/memory@80000000")
		if mem == nil {
			t.Fatal("no /memory node")
		}
		if reg, _ := mem.Prop("reg").U64s(); len(reg) != 2 || reg[0] != RAMBase || reg[1] != 64<<20 {
			t.Errorf("memory reg = %#x", reg)
		}
		if s, _ := root.Find("/chosen").Prop("bootargs").StringValue(); s != "console=ttyS0 x=1" {
			t.Errorf("bootargs = %q", s)
		}
		start, _ := root.Find("/chosen").Prop("linux,initrd-start").U64s()
		end, _ := root.Find("/chosen").Prop("linux,initrd-end").U64s()
		if len(start) != 1 || len(end) != 1 || end[0]-start[0] != 5000 || !bytes.Equal(m.ram[start[0]-RAMBase:end[0]-RAMBase], cfg.Initrd) {
			t.Errorf("initrd range %#x-%#x does not hold the initrd", start, end)
		}
		if isa, _ := root.Find("/cpus/cpu@0").Prop("riscv,isa").StringValue(); isa != "rv64imafdc_zicsr_zifencei_zihintpause" {
			t.Errorf("riscv,isa = %q", isa)
		}
		var virtio []string
		for _, c := range root.Find("/soc").Children {
			if p := c.Prop("compatible"); p != nil {
				if s, _ := p.StringValue(); s == "virtio,mmio" {
					virtio = append(virtio, c.Name)
				}
			}
		}
		want := []string{"virtio_mmio@10001000"}
		if withDisk {
			want = append(want, "virtio_mmio@10002000")
		}
		if len(virtio) != len(want) || virtio[0] != want[0] {
			t.Errorf("virtio nodes %v, want %v", virtio, want)
		}
		for _, n := range []string{"/soc/serial@10000000", "/soc/plic@c000000", "/soc/clint@2000000", "/soc/test@100000", "/soc/poweroff", "/soc/reboot"} {
			if root.Find(n) == nil {
				t.Errorf("missing %s", n)
			}
		}
	}
}

// TestDeviceTreeHarts: a machine with several harts describes each, with
// its own interrupt controller, and the CLINT and PLIC reach all of them.
func TestDeviceTreeHarts(t *testing.T) {
	m, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel(), Harts: 3})
	if err != nil {
		t.Fatal(err)
	}
	root, err := fdt.Parse(m.dtb)
	if err != nil {
		t.Fatal(err)
	}
	var phandles []uint32
	for i := range 3 {
		cpu := root.Find(fmt.Sprintf("/cpus/cpu@%d", i))
		if cpu == nil {
			t.Fatalf("no cpu@%d", i)
		}
		if r, _ := cpu.Prop("reg").U32(); r != uint32(i) {
			t.Errorf("cpu@%d reg %d", i, r)
		}
		ph, _ := cpu.Child("interrupt-controller").Prop("phandle").U32()
		phandles = append(phandles, ph)
	}
	if root.Find("/cpus/cpu@3") != nil {
		t.Error("a fourth cpu")
	}
	clint, _ := root.Find("/soc/clint@2000000").Prop("interrupts-extended").U32s()
	plic, _ := root.Find("/soc/plic@c000000").Prop("interrupts-extended").U32s()
	var wantClint, wantPlic []uint32
	for _, ph := range phandles {
		wantClint = append(wantClint, ph, 3, ph, 7)
		wantPlic = append(wantPlic, ph, 11, ph, 9)
	}
	if !slices.Equal(clint, wantClint) || !slices.Equal(plic, wantPlic) {
		t.Errorf("clint %v plic %v, want %v %v", clint, plic, wantClint, wantPlic)
	}
}

// TestUserDeviceTree: a tree supplied with Config.DTB is checked against the
// machine; the machine's own tree passes, and each inconsistency is named.
func TestUserDeviceTree(t *testing.T) {
	base, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel()})
	if err != nil {
		t.Fatal(err)
	}
	good := base.dtb
	m4, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel(), Harts: 4})
	if err != nil {
		t.Fatal(err)
	}
	four := m4.dtb
	if _, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel(), Harts: 4, DTB: four}); err != nil {
		t.Fatalf("the four-hart machine's own tree was rejected: %v", err)
	}
	m, err := New(Config{MemoryMiB: 64, Kernel: fakeKernel(), DTB: good, Cmdline: "new args"})
	if err != nil {
		t.Fatalf("the machine's own tree was rejected: %v", err)
	}
	root, _ := fdt.Parse(m.dtb)
	if s, _ := root.Find("/chosen").Prop("bootargs").StringValue(); s != "new args" {
		t.Errorf("bootargs = %q, want the configured command line", s)
	}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"not a DTB", Config{DTB: []byte("garbage")}, "device tree"},
		{"less memory than the tree", Config{MemoryMiB: 32, DTB: good}, "outside the machine's RAM"},
		{"bad initrd", Config{MemoryMiB: 64, Initrd: []byte("PK\x03\x04zip")}, "not an initramfs"},
		{"more harts than the tree", Config{MemoryMiB: 64, DTB: good, Harts: 2}, "describes 1 harts; this machine has 2"},
		{"fewer harts than the tree", Config{MemoryMiB: 64, DTB: four}, "harts have ids 0 to 0"},
		{"too many harts", Config{MemoryMiB: 64, Harts: MaxHarts + 1}, "harts: must be between"},
	}
	for _, c := range cases {
		c.cfg.Kernel = fakeKernel()
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
