package fdt

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// virtTree writes a tree shaped like the one the board needs (QEMU virt
// memory map), exercising every kind of property.
func virtTree(b *Builder) {
	b.SetBootCPU(0)
	b.AddReservation(0x80000000, 0x200000)
	b.BeginNode("")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropString("compatible", "riscv-virtio")
	b.PropString("model", "ftvm")

	b.BeginNode("chosen")
	b.PropString("bootargs", "console=ttyS0 earlycon")
	b.PropString("stdout-path", "/soc/serial@10000000")
	b.EndNode()

	b.BeginNode("cpus")
	b.PropU32("#address-cells", 1)
	b.PropU32("#size-cells", 0)
	b.PropU32("timebase-frequency", 10000000)
	b.BeginNode("cpu@0")
	b.PropString("device_type", "cpu")
	b.PropU32("reg", 0)
	b.PropString("status", "okay")
	b.PropString("compatible", "riscv")
	b.PropString("riscv,isa", "rv64imafdc")
	b.PropString("mmu-type", "riscv,sv39")
	b.BeginNode("interrupt-controller")
	b.PropU32("#interrupt-cells", 1)
	b.PropEmpty("interrupt-controller")
	b.PropString("compatible", "riscv,cpu-intc")
	b.PropU32("phandle", 1)
	b.EndNode()
	b.EndNode()
	b.EndNode()

	b.BeginNode("memory@80000000")
	b.PropString("device_type", "memory")
	b.PropU64s("reg", 0x80000000, 0x10000000)
	b.EndNode()

	b.BeginNode("soc")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropString("compatible", "simple-bus")
	b.PropEmpty("ranges")
	b.BeginNode("plic@c000000")
	b.PropStrings("compatible", "sifive,plic-1.0.0", "riscv,plic0")
	b.PropU64s("reg", 0xc000000, 0x4000000)
	b.PropU32s("interrupts-extended", 1, 11, 1, 9)
	b.PropU32("riscv,ndev", 31)
	b.PropU32("#interrupt-cells", 1)
	b.PropEmpty("interrupt-controller")
	b.PropU32("phandle", 2)
	b.EndNode()
	b.BeginNode("serial@10000000")
	b.PropString("compatible", "ns16550a")
	b.PropU64s("reg", 0x10000000, 0x100)
	b.PropU32("interrupts", 10)
	b.PropU32("interrupt-parent", 2)
	b.PropU32("clock-frequency", 3686400)
	b.EndNode()
	b.BeginNode("test@100000")
	b.PropBytes("compatible", []byte("sifive,test1\x00sifive,test0\x00syscon\x00"))
	b.PropU64s("reg", 0x100000, 0x1000)
	b.EndNode()
	b.EndNode()
	b.EndNode()
}

func buildVirt(t *testing.T) []byte {
	t.Helper()
	b := New()
	virtTree(b)
	blob, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestHeaderLayout(t *testing.T) {
	blob := buildVirt(t)
	h := func(i int) uint32 { return binary.BigEndian.Uint32(blob[4*i:]) }
	if h(0) != 0xd00dfeed || int(h(1)) != len(blob) || h(5) != 17 || h(6) != 16 {
		t.Fatalf("header magic %#x total %d version %d/%d", h(0), h(1), h(5), h(6))
	}
	offStruct, offStrings, offRsv := h(2), h(3), h(4)
	if offRsv != 40 || offRsv%8 != 0 || offStruct%4 != 0 {
		t.Fatalf("offsets rsv %d struct %d", offRsv, offStruct)
	}
	// One reservation plus the terminating all-zero entry.
	if offStruct != offRsv+32 || !bytes.Equal(blob[offRsv+16:offRsv+32], make([]byte, 16)) {
		t.Fatal("reservation block not terminated")
	}
	if offStruct+h(9) != offStrings || int(offStrings+h(8)) != len(blob) {
		t.Fatal("block sizes do not tile the blob")
	}
	if binary.BigEndian.Uint32(blob[offStruct:]) != tokBeginNode {
		t.Fatal("structure block does not start with FDT_BEGIN_NODE")
	}
	if binary.BigEndian.Uint32(blob[offStrings-4:]) != tokEnd {
		t.Fatal("structure block does not end with FDT_END")
	}
	// Names are deduplicated: "compatible" is used 8 times, stored once.
	strs := string(blob[offStrings:])
	if n := strings.Count(strs, "compatible\x00"); n != 1 {
		t.Fatalf("\"compatible\" stored %d times", n)
	}
}

func TestRoundTrip(t *testing.T) {
	tree, err := ParseTree(buildVirt(t))
	if err != nil {
		t.Fatal(err)
	}
	if tree.BootCPU != 0 || !reflect.DeepEqual(tree.Reservations, []Reservation{{0x80000000, 0x200000}}) {
		t.Fatalf("boot cpu %d reservations %v", tree.BootCPU, tree.Reservations)
	}
	root := tree.Root
	if s, err := root.Prop("compatible").StringValue(); err != nil || s != "riscv-virtio" {
		t.Fatalf("compatible %q %v", s, err)
	}
	plic := root.Find("/soc/plic@c000000")
	if plic == nil {
		t.Fatal("no plic")
	}
	if ss, _ := plic.Prop("compatible").Strings(); !reflect.DeepEqual(ss, []string{"sifive,plic-1.0.0", "riscv,plic0"}) {
		t.Fatalf("plic compatible %q", ss)
	}
	if v, _ := plic.Prop("interrupts-extended").U32s(); !reflect.DeepEqual(v, []uint32{1, 11, 1, 9}) {
		t.Fatalf("interrupts-extended %v", v)
	}
	if p := plic.Prop("interrupt-controller"); p == nil || len(p.Value) != 0 {
		t.Fatal("empty property lost")
	}
	if v, _ := root.Find("/memory").Prop("reg").U64s(); !reflect.DeepEqual(v, []uint64{0x80000000, 0x10000000}) {
		t.Fatalf("memory reg %#x", v)
	}
	if v, _ := root.Find("/soc/serial").Prop("interrupts").U32(); v != 10 {
		t.Fatalf("uart interrupts %d", v)
	}
	if root.Find("/cpus/cpu@0/interrupt-controller") == nil || root.Find("/cpus/cpu@1") != nil || root.Find("soc") != nil {
		t.Fatal("Find")
	}
	if ss, _ := root.Find("/soc/test@100000").Prop("compatible").Strings(); len(ss) != 3 || ss[1] != "sifive,test0" {
		t.Fatalf("test compatible %q", ss)
	}
}

func TestBuilderErrors(t *testing.T) {
	cases := map[string]func(b *Builder){
		"no root":          func(b *Builder) {},
		"unclosed":         func(b *Builder) { b.BeginNode(""); b.BeginNode("a"); b.EndNode() },
		"extra EndNode":    func(b *Builder) { b.BeginNode(""); b.EndNode(); b.EndNode() },
		"two roots":        func(b *Builder) { b.BeginNode(""); b.EndNode(); b.BeginNode("") },
		"named root":       func(b *Builder) { b.BeginNode("root"); b.EndNode() },
		"empty child name": func(b *Builder) { b.BeginNode(""); b.BeginNode(""); b.EndNode(); b.EndNode() },
		"slash in name":    func(b *Builder) { b.BeginNode(""); b.BeginNode("a/b"); b.EndNode(); b.EndNode() },
		"prop outside":     func(b *Builder) { b.PropU32("x", 1); b.BeginNode(""); b.EndNode() },
		"prop after child": func(b *Builder) { b.BeginNode(""); b.BeginNode("a"); b.EndNode(); b.PropU32("x", 1); b.EndNode() },
		"duplicate prop":   func(b *Builder) { b.BeginNode(""); b.PropU32("x", 1); b.PropU32("x", 2); b.EndNode() },
		"bad prop name":    func(b *Builder) { b.BeginNode(""); b.PropU32("a b", 1); b.EndNode() },
		"NUL in string":    func(b *Builder) { b.BeginNode(""); b.PropString("s", "a\x00b"); b.EndNode() },
		"empty unit":       func(b *Builder) { b.BeginNode(""); b.BeginNode("a@"); b.EndNode(); b.EndNode() },
		"long node name":   func(b *Builder) { b.BeginNode(""); b.BeginNode(strings.Repeat("n", 32)); b.EndNode(); b.EndNode() },
	}
	for name, f := range cases {
		b := New()
		f(b)
		if _, err := b.Finish(); err == nil {
			t.Errorf("%s: Finish succeeded", name)
		}
	}
	b := New()
	b.BeginNode("")
	b.BeginNode("a")
	b.EndNode()
	b.BeginNode("a@1,2") // same node-name, different unit address: fine
	b.EndNode()
	b.EndNode()
	if _, err := b.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestParseRejects(t *testing.T) {
	good := buildVirt(t)
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	put := func(b []byte, i int, v uint32) []byte { binary.BigEndian.PutUint32(b[4*i:], v); return b }
	offStruct := int(binary.BigEndian.Uint32(good[8:]))
	cases := map[string][]byte{
		"empty":          nil,
		"short":          good[:39],
		"magic":          mutate(func(b []byte) []byte { return put(b, 0, 0xd00dfeee) }),
		"totalsize":      mutate(func(b []byte) []byte { return put(b, 1, uint32(len(b)+1)) }),
		"truncated":      good[:len(good)-1],
		"version":        mutate(func(b []byte) []byte { return put(b, 5, 16) }),
		"struct offset":  mutate(func(b []byte) []byte { return put(b, 2, 0xFFFFFFF0) }),
		"struct size":    mutate(func(b []byte) []byte { return put(b, 9, 0xFFFFFFFF) }),
		"strings size":   mutate(func(b []byte) []byte { return put(b, 8, 0xFFFFFFFF) }),
		"rsv offset":     mutate(func(b []byte) []byte { return put(b, 4, 44) }),
		"first token":    mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offStruct:], 7); return b }),
		"no FDT_END":     mutate(func(b []byte) []byte { return put(b, 9, binary.BigEndian.Uint32(b[36:])-4) }),
		"no reservation": mutate(func(b []byte) []byte { return put(b, 4, uint32(len(b)-8)) }),
	}
	for name, blob := range cases {
		if _, err := Parse(blob); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestParseDepthLimit(t *testing.T) {
	b := New()
	b.BeginNode("")
	for i := 0; i < MaxDepth; i++ {
		b.BeginNode("n")
	}
	for i := 0; i <= MaxDepth; i++ {
		b.EndNode()
	}
	blob, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(blob); err == nil {
		t.Fatal("parsed a tree deeper than MaxDepth")
	}
}

func FuzzParse(f *testing.F) {
	b := New()
	virtTree(b)
	blob, _ := b.Finish()
	f.Add(blob)
	f.Add(blob[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := ParseTree(data)
		if err != nil {
			return
		}
		// Everything reachable must be usable without panics.
		stack := []*Node{tree.Root}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = append(stack[:len(stack)-1], n.Children...)
			for i := range n.Props {
				p := &n.Props[i]
				p.U32()
				p.U32s()
				p.U64s()
				p.Strings()
				p.StringValue()
			}
			n.Find("/a/b@1")
		}
	})
}
