package fdt

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
)

// dtc runs the reference device tree compiler (Debian package
// device-tree-compiler) on input and returns its output.
func dtc(t *testing.T, input []byte, args ...string) []byte {
	t.Helper()
	path := testsupport.Tool(t, "dtc", "device-tree-compiler")
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, append(args, in)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dtc %v: %v\n%s", args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// dtc must accept our blob and decompile it to the tree we wrote.
func TestDtcDecompiles(t *testing.T) {
	dts := string(dtc(t, buildVirt(t), "-I", "dtb", "-O", "dts"))
	for _, want := range []string{
		"/memreserve/\t0x0000000080000000 0x0000000000200000;",
		"compatible = \"riscv-virtio\";",
		"\tcpus {", "\t\tcpu@0 {", "riscv,isa = \"rv64imafdc\";",
		"memory@80000000 {", "reg = <0x00 0x80000000 0x00 0x10000000>;",
		"plic@c000000 {", "compatible = \"sifive,plic-1.0.0\\0riscv,plic0\";",
		"interrupts-extended = <0x01 0x0b 0x01 0x09>;",
		"\t\t\tinterrupt-controller;",
		"serial@10000000 {", "interrupts = <0x0a>;",
		"test@100000 {",
	} {
		if !strings.Contains(dts, want) {
			t.Errorf("dtc output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(dts)
	}
}

// dtc re-encoding our blob (its own layout, string table and padding) must
// parse to the same tree; and a dtc-compiled source must parse as written.
func TestDtcRoundTrip(t *testing.T) {
	ours := buildVirt(t)
	want, err := ParseTree(ours)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTree(dtc(t, ours, "-I", "dtb", "-O", "dtb"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("dtc's re-encoding parses differently:\n%+v\n%+v", got, want)
	}

	src := `/dts-v1/;
/memreserve/ 0x1000 0x2000;
/ {
	#address-cells = <2>;
	big = /bits/ 64 <0x123456789abcdef0>;
	bytes = [01 02 03];
	n@1 { s = "x", "yz"; e; };
};`
	tree, err := ParseTree(dtc(t, []byte(src), "-I", "dts", "-O", "dtb", "-b", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if tree.BootCPU != 3 || !reflect.DeepEqual(tree.Reservations, []Reservation{{0x1000, 0x2000}}) {
		t.Fatalf("header: %+v", tree)
	}
	r := tree.Root
	if v, _ := r.Prop("big").U64s(); len(v) != 1 || v[0] != 0x123456789abcdef0 {
		t.Fatalf("big = %#x", v)
	}
	if p := r.Prop("bytes"); p == nil || !bytes.Equal(p.Value, []byte{1, 2, 3}) {
		t.Fatal("bytes")
	}
	n := r.Find("/n@1")
	if ss, _ := n.Prop("s").Strings(); !reflect.DeepEqual(ss, []string{"x", "yz"}) || n.Prop("e") == nil {
		t.Fatalf("n@1: %+v", n)
	}
}
