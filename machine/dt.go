package machine

import (
	"crypto/sha256"
	"fmt"
	"strings"

	"ftvm/devices"
	"ftvm/fdt"
)

const (
	phandleCPUIntc = 1 // hart 0's; hart i's is phandleSyscon+i
	phandlePLIC    = 2
	phandleSyscon  = 3
)

// intcPhandle is the phandle of hart i's local interrupt controller.
func intcPhandle(i int) uint32 {
	if i == 0 {
		return phandleCPUIntc
	}
	return uint32(phandleSyscon + i)
}

// isaString is what the harts implement. Zihintpause is there for Linux:
// its cpu_relax then emits the pause hint in every spin-wait loop, where
// the interleaved harts switch (sched.go).
const isaString = "rv64imafdc_zicsr_zifencei_zihintpause"

// deviceTree describes exactly the machine that was built: its harts, RAM,
// CLINT, PLIC, UART, the syscon power controls and the virtio-mmio slots in
// use. The layout is the one of QEMU's virt board, which Linux knows.
func (m *Machine) deviceTree(initrdStart, initrdEnd uint64) ([]byte, error) {
	b := fdt.New()
	b.BeginNode("")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropString("compatible", "ftvm,virt")
	b.PropString("model", "ftvm virt")

	b.BeginNode("chosen")
	m.chosenProps(b, initrdStart, initrdEnd, true)
	b.EndNode()

	b.BeginNode("reserved-memory")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropEmpty("ranges")
	b.BeginNode(fmt.Sprintf("firmware@%x", firmwareBase))
	b.PropU64s("reg", firmwareBase, 0x1000)
	b.PropEmpty("no-map")
	b.EndNode()
	b.EndNode()

	b.BeginNode("cpus")
	b.PropU32("#address-cells", 1)
	b.PropU32("#size-cells", 0)
	b.PropU32("timebase-frequency", TimebaseHz)
	for i := range m.harts {
		b.BeginNode(fmt.Sprintf("cpu@%d", i))
		b.PropString("device_type", "cpu")
		b.PropU32("reg", uint32(i))
		b.PropString("status", "okay")
		b.PropString("compatible", "riscv")
		b.PropString("riscv,isa", isaString)
		b.PropString("mmu-type", "riscv,sv39")
		b.BeginNode("interrupt-controller")
		b.PropU32("#interrupt-cells", 1)
		b.PropU32("#address-cells", 0)
		b.PropEmpty("interrupt-controller")
		b.PropString("compatible", "riscv,cpu-intc")
		b.PropU32("phandle", intcPhandle(i))
		b.EndNode()
		b.EndNode()
	}
	b.EndNode()

	b.BeginNode(fmt.Sprintf("memory@%x", RAMBase))
	b.PropString("device_type", "memory")
	b.PropU64s("reg", RAMBase, uint64(len(m.ram)))
	b.EndNode()

	b.BeginNode("soc")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropString("compatible", "simple-bus")
	b.PropEmpty("ranges")

	b.BeginNode(fmt.Sprintf("clint@%x", CLINTBase))
	b.PropStrings("compatible", "sifive,clint0", "riscv,clint0")
	b.PropU64s("reg", CLINTBase, 0x10000)
	var clintIRQs, plicIRQs []uint32
	for i := range m.harts {
		clintIRQs = append(clintIRQs, intcPhandle(i), 3, intcPhandle(i), 7)
		plicIRQs = append(plicIRQs, intcPhandle(i), 11, intcPhandle(i), 9)
	}
	b.PropU32s("interrupts-extended", clintIRQs...)
	b.EndNode()

	b.BeginNode(fmt.Sprintf("plic@%x", PLICBase))
	b.PropStrings("compatible", "sifive,plic-1.0.0", "riscv,plic0")
	b.PropU64s("reg", PLICBase, 0x4000000)
	b.PropU32("#interrupt-cells", 1)
	b.PropU32("#address-cells", 0)
	b.PropEmpty("interrupt-controller")
	b.PropU32s("interrupts-extended", plicIRQs...)
	b.PropU32("riscv,ndev", 31)
	b.PropU32("phandle", phandlePLIC)
	b.EndNode()

	b.BeginNode(fmt.Sprintf("serial@%x", UARTBase))
	b.PropString("compatible", "ns16550a")
	b.PropU64s("reg", UARTBase, 0x100)
	b.PropU32("clock-frequency", 3686400)
	b.PropU32("interrupt-parent", phandlePLIC)
	b.PropU32("interrupts", uartIRQ)
	b.EndNode()

	b.BeginNode(fmt.Sprintf("rtc@%x", devices.RTCBase))
	b.PropString("compatible", "google,goldfish-rtc")
	b.PropU64s("reg", devices.RTCBase, devices.RTCSize)
	b.PropU32("interrupt-parent", phandlePLIC)
	b.PropU32("interrupts", rtcIRQ)
	b.EndNode()

	b.BeginNode(fmt.Sprintf("test@%x", SysconBase))
	b.PropStrings("compatible", "sifive,test1", "sifive,test0", "syscon")
	b.PropU64s("reg", SysconBase, 0x1000)
	b.PropU32("phandle", phandleSyscon)
	b.EndNode()

	b.BeginNode("poweroff")
	b.PropString("compatible", "syscon-poweroff")
	b.PropU32("regmap", phandleSyscon)
	b.PropU32("offset", 0)
	b.PropU32("value", 0x5555)
	b.EndNode()

	b.BeginNode("reboot")
	b.PropString("compatible", "syscon-reboot")
	b.PropU32("regmap", phandleSyscon)
	b.PropU32("offset", 0)
	b.PropU32("value", 0x7777)
	b.EndNode()

	for _, r := range m.mmio {
		if r.base < VirtioBase || r.base >= VirtioBase+8*VirtioSize {
			continue
		}
		slot := (r.base - VirtioBase) / VirtioSize
		b.BeginNode(fmt.Sprintf("virtio_mmio@%x", r.base))
		b.PropString("compatible", "virtio,mmio")
		b.PropU64s("reg", r.base, VirtioSize)
		b.PropU32("interrupt-parent", phandlePLIC)
		b.PropU32("interrupts", uint32(virtioIRQ+slot))
		b.EndNode()
	}
	b.EndNode() // soc
	b.EndNode() // root
	return b.Finish()
}

// rngSeed returns the configured seed, or 64 bytes derived from the kernel
// command line.
func (m *Machine) rngSeed() []byte {
	if len(m.cfg.RNGSeed) > 0 {
		return m.cfg.RNGSeed
	}
	a := sha256.Sum256([]byte("ftvm rng-seed 0\x00" + m.cfg.Cmdline))
	b := sha256.Sum256(a[:])
	return append(a[:], b[:]...)
}

// userDeviceTree validates a device tree supplied by the user against the
// machine that was built and returns it with /chosen filled in (command
// line, initrd, rng-seed). Every error says what in the tree is wrong: a
// tree Linux would boot on but that does not describe this machine would
// otherwise fail silently inside the guest.
func (m *Machine) userDeviceTree(blob []byte, initrdStart, initrdEnd uint64) ([]byte, error) {
	root, err := fdt.Parse(blob)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"#address-cells", "#size-cells"} {
		if v, err := u32Prop(root, p); err != nil || v != 2 {
			return nil, fmt.Errorf("root %s must be 2", p)
		}
	}
	var mems int
	for _, c := range root.Children {
		if s, _ := stringProp(c, "device_type"); s != "memory" {
			continue
		}
		mems++
		p := c.Prop("reg")
		if p == nil {
			return nil, fmt.Errorf("/%s has no reg", c.Name)
		}
		reg, err := p.U64s()
		if err != nil || len(reg) == 0 || len(reg)%2 != 0 {
			return nil, fmt.Errorf("/%s: malformed reg", c.Name)
		}
		for i := 0; i < len(reg); i += 2 {
			if reg[i] < RAMBase || reg[i+1] > uint64(len(m.ram)) || reg[i]-RAMBase > uint64(len(m.ram))-reg[i+1] {
				return nil, fmt.Errorf("/%s: range %#x+%#x is outside the machine's RAM [%#x, %#x)", c.Name, reg[i], reg[i+1], RAMBase, RAMBase+len(m.ram))
			}
		}
	}
	if mems == 0 {
		return nil, fmt.Errorf("no memory node (device_type = \"memory\")")
	}
	cpus := root.Child("cpus")
	if cpus == nil {
		return nil, fmt.Errorf("no /cpus node")
	}
	if tb, err := u32Prop(cpus, "timebase-frequency"); err != nil || tb != TimebaseHz {
		return nil, fmt.Errorf("/cpus timebase-frequency must be %d (the machine's timer)", TimebaseHz)
	}
	var harts int
	seen := make([]bool, len(m.harts))
	for _, c := range cpus.Children {
		if s, _ := stringProp(c, "device_type"); s != "cpu" {
			continue
		}
		harts++
		r, err := u32Prop(c, "reg")
		if err != nil || int(r) >= len(m.harts) || seen[r] {
			return nil, fmt.Errorf("/cpus/%s: this machine's harts have ids 0 to %d, each once", c.Name, len(m.harts)-1)
		}
		seen[r] = true
		if isa, _ := stringProp(c, "riscv,isa"); !strings.HasPrefix(isa, "rv64") {
			return nil, fmt.Errorf("/cpus/%s: riscv,isa %q is not an rv64 ISA string", c.Name, isa)
		}
		if mmu, ok := stringProp(c, "mmu-type"); ok && mmu != "riscv,sv39" {
			return nil, fmt.Errorf("/cpus/%s: mmu-type %q: this machine implements riscv,sv39", c.Name, mmu)
		}
	}
	if harts != len(m.harts) {
		return nil, fmt.Errorf("/cpus describes %d harts; this machine has %d", harts, len(m.harts))
	}

	b := fdt.New()
	var emit func(n *fdt.Node, path string)
	emit = func(n *fdt.Node, path string) {
		b.BeginNode(n.Name)
		isChosen := path == "/chosen"
		for _, p := range n.Props {
			if isChosen && (p.Name == "linux,initrd-start" || p.Name == "linux,initrd-end" ||
				p.Name == "rng-seed" || p.Name == "bootargs" && m.cfg.Cmdline != "") {
				continue
			}
			b.PropBytes(p.Name, p.Value)
		}
		if isChosen {
			m.chosenProps(b, initrdStart, initrdEnd, false)
		}
		for _, c := range n.Children {
			emit(c, strings.TrimSuffix(path, "/")+"/"+c.Name)
		}
		if path == "/" && root.Child("chosen") == nil {
			b.BeginNode("chosen")
			m.chosenProps(b, initrdStart, initrdEnd, true)
			b.EndNode()
		}
		b.EndNode()
	}
	emit(root, "/")
	return b.Finish()
}

// chosenProps writes /chosen: the command line, the console, the initrd, and
// entropy for the guest's random driver. Without the seed Linux 6.1 would
// gather "jitter" entropy from timer reads, which on a machine whose time is
// the instruction count is no entropy at all; the seed is part of the
// configuration, so replicas and replays see the same one.
func (m *Machine) chosenProps(b *fdt.Builder, initrdStart, initrdEnd uint64, stdout bool) {
	if m.cfg.Cmdline != "" {
		b.PropString("bootargs", m.cfg.Cmdline)
	}
	if stdout {
		b.PropString("stdout-path", fmt.Sprintf("/soc/serial@%x", UARTBase))
	}
	b.PropBytes("rng-seed", m.rngSeed())
	if initrdEnd > initrdStart {
		b.PropU64s("linux,initrd-start", initrdStart)
		b.PropU64s("linux,initrd-end", initrdEnd)
	}
}

func u32Prop(n *fdt.Node, name string) (uint32, error) {
	p := n.Prop(name)
	if p == nil {
		return 0, fmt.Errorf("no %s", name)
	}
	return p.U32()
}

func stringProp(n *fdt.Node, name string) (string, bool) {
	p := n.Prop(name)
	if p == nil {
		return "", false
	}
	s, err := p.StringValue()
	return s, err == nil
}
