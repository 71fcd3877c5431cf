package machine

import (
	"crypto/sha256"
	"fmt"

	"ftvm/fdt"
)

const (
	phandleCPUIntc = 1
	phandlePLIC    = 2
	phandleSyscon  = 3
)

// deviceTree describes exactly the machine that was built: one hart, RAM,
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
	b.PropString("bootargs", m.cfg.Cmdline)
	b.PropString("stdout-path", fmt.Sprintf("/soc/serial@%x", UARTBase))
	// Entropy for the guest's random driver. Without it Linux 6.1 spends
	// some 40 M instructions at boot generating "jitter" entropy from timer
	// reads, which on a machine whose time is the instruction count is no
	// entropy at all. The seed is part of the configuration, so replicas
	// and replays see the same one.
	b.PropBytes("rng-seed", m.rngSeed())
	if initrdEnd > initrdStart {
		b.PropU64s("linux,initrd-start", initrdStart)
		b.PropU64s("linux,initrd-end", initrdEnd)
	}
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
	b.BeginNode("cpu@0")
	b.PropString("device_type", "cpu")
	b.PropU32("reg", 0)
	b.PropString("status", "okay")
	b.PropString("compatible", "riscv")
	b.PropString("riscv,isa", "rv64imafdc_zicsr_zifencei")
	b.PropString("mmu-type", "riscv,sv39")
	b.BeginNode("interrupt-controller")
	b.PropU32("#interrupt-cells", 1)
	b.PropU32("#address-cells", 0)
	b.PropEmpty("interrupt-controller")
	b.PropString("compatible", "riscv,cpu-intc")
	b.PropU32("phandle", phandleCPUIntc)
	b.EndNode()
	b.EndNode()
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
	b.PropU32s("interrupts-extended", phandleCPUIntc, 3, phandleCPUIntc, 7)
	b.EndNode()

	b.BeginNode(fmt.Sprintf("plic@%x", PLICBase))
	b.PropStrings("compatible", "sifive,plic-1.0.0", "riscv,plic0")
	b.PropU64s("reg", PLICBase, 0x4000000)
	b.PropU32("#interrupt-cells", 1)
	b.PropU32("#address-cells", 0)
	b.PropEmpty("interrupt-controller")
	b.PropU32s("interrupts-extended", phandleCPUIntc, 11, phandleCPUIntc, 9)
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
