package machine

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"ftvm/riscv"
)

// firmwareBase is a page at the start of RAM that the device tree reserves
// for the machine, as OpenSBI's region is on other boards. It holds the
// M-mode trap vector: with the SBI built into the machine nothing should
// ever trap to M-mode, and if something does, the machine stops with a
// clear error instead of looping.
const firmwareBase = RAMBase

// mtrapCode is the M-mode trap handler: write 0xdead3333 (fail, code
// 0xdead) to the syscon.
var mtrapCode = []uint32{
	0x001002b7, // lui  t0, 0x100       (SysconBase)
	0xdead3337, // lui  t1, 0xdead3
	0x3333031b, // addiw t1, t1, 0x333
	0x0062a023, // sw   t1, 0(t0)
	0x0000006f, // j    .
}

const mtrapExitCode = 0xdead

// linuxImageMagic is the RISC-V Linux Image header magic (at offset 0x30),
// Documentation/riscv/boot-image-header.rst.
var linuxImageMagic = []byte("RISCV\x00\x00\x00")

func (m *Machine) bootLinux() error {
	k := m.cfg.Kernel
	if len(k) < 64 || !bytes.Equal(k[0x30:0x38], linuxImageMagic) {
		return errors.New("kernel: not a RISC-V Linux Image (no \"RISCV\" magic at offset 0x30)")
	}
	imageSize := binary.LittleEndian.Uint64(k[0x10:])
	if imageSize < uint64(len(k)) {
		imageSize = uint64(len(k))
	}
	// The device tree goes at the top of RAM, the initrd below it, both
	// clear of the kernel's memory (Image header image_size, plus slack
	// for its early allocations). image_size comes from the image: the
	// comparisons are written so that no sum can wrap.
	ramEnd := uint64(RAMBase + len(m.ram))
	dtbAddr := ramEnd - 64<<10
	if imageSize > dtbAddr-KernelBase {
		return fmt.Errorf("kernel: image needs %d bytes (image_size in its header) but the machine has %d MiB", imageSize, len(m.ram)>>20)
	}
	kernelEnd := KernelBase + imageSize
	m.loadRAM(KernelBase-RAMBase, k)

	var initrdStart, initrdEnd uint64
	if len(m.cfg.Initrd) > 0 {
		if err := checkInitrd(m.cfg.Initrd); err != nil {
			return err
		}
		initrdEnd = dtbAddr
		n := uint64(len(m.cfg.Initrd))
		if n > initrdEnd-kernelEnd || (initrdEnd-n)&^0xfff < kernelEnd || (initrdEnd-n)&^0xfff-kernelEnd < 16<<20 {
			return fmt.Errorf("initrd: %d bytes does not fit in %d MiB of memory beside the kernel", len(m.cfg.Initrd), len(m.ram)>>20)
		}
		initrdStart = (initrdEnd - n) &^ 0xfff
		m.loadRAM(initrdStart-RAMBase, m.cfg.Initrd)
		initrdEnd = initrdStart + uint64(len(m.cfg.Initrd))
	}
	var dtb []byte
	var err error
	if m.cfg.DTB != nil {
		dtb, err = m.userDeviceTree(m.cfg.DTB, initrdStart, initrdEnd)
	} else {
		dtb, err = m.deviceTree(initrdStart, initrdEnd)
	}
	if err != nil {
		return fmt.Errorf("device tree: %w", err)
	}
	if len(dtb) > 64<<10 {
		return errors.New("device tree: larger than 64 KiB")
	}
	m.dtb = dtb
	m.loadRAM(dtbAddr-RAMBase, dtb)
	firmware := make([]byte, 0, 4*len(mtrapCode))
	for _, w := range mtrapCode {
		firmware = binary.LittleEndian.AppendUint32(firmware, w)
	}
	m.loadRAM(firmwareBase-RAMBase, firmware)

	// Enter S-mode at the kernel on hart 0 with a0 = hart id, a1 = device
	// tree (Linux boot protocol, Documentation/riscv/boot.rst); the other
	// harts wait for the kernel to start them (SBI HSM).
	m.startSupervisor(KernelBase, dtbAddr, firmwareBase)
	m.attachTimer(true)
	return nil
}

// startSupervisor starts hart 0 in S-mode at pc with a1 = arg, as firmware
// does, with M-mode traps going to mtvec, and stops the other harts.
func (m *Machine) startSupervisor(pc, arg, mtvec uint64) {
	for i, h := range m.harts {
		h.SetMachineCSR(riscv.CSRMtvec, mtvec)
		m.firmware(h)
		if i > 0 {
			m.hsm[i].status = hsmStopped
		}
	}
	m.harts[0].X[10] = 0
	m.harts[0].X[11] = arg
	m.harts[0].EnterMode(riscv.PrivS, pc)
}

// firmware does what M-mode firmware does to a hart before it enters
// S-mode: point M-mode traps where hart 0's go, delegate the traps S-mode
// handles and let S and U read the counters.
func (m *Machine) firmware(h *riscv.Hart) {
	mtvec, _ := m.harts[0].DebugReadCSR(riscv.CSRMtvec)
	h.SetMachineCSR(riscv.CSRMtvec, mtvec)
	h.SetMachineCSR(riscv.CSRMedeleg, 0xb1ff) // all but ecall from S/M
	h.SetMachineCSR(riscv.CSRMideleg, 1<<riscv.IntSSI|1<<riscv.IntSTI|1<<riscv.IntSEI)
	h.SetMachineCSR(riscv.CSRMcounteren, 7)
	// OpenSBI also opens the counters to U-mode; Linux 6.1 never writes
	// scounteren, and its vDSO and the Go runtime read time from U-mode.
	h.SetMachineCSR(riscv.CSRScounteren, 7)
}

func (m *Machine) mtime() uint64 { return m.clock.now(m.count()) }

func (m *Machine) bootELF(image []byte) error {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return fmt.Errorf("ELF: %w", err)
	}
	if f.Machine != elf.EM_RISCV || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("ELF: not a 64-bit RISC-V program (%v, %v)", f.Class, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		off, ok := m.ramRange(p.Paddr, p.Memsz)
		if !ok || p.Filesz > p.Memsz {
			return fmt.Errorf("ELF: segment at %#x (%d bytes) lies outside RAM [%#x, %#x)", p.Paddr, p.Memsz, RAMBase, RAMBase+len(m.ram))
		}
		n, err := p.ReadAt(m.ram[off:off+p.Filesz], 0)
		if uint64(n) != p.Filesz {
			return fmt.Errorf("ELF: segment at %#x: %v", p.Paddr, err)
		}
		m.noteWrite(p.Paddr, p.Filesz)
	}
	if m.cfg.ELFSupervisor {
		// No firmware page here (the program may start at RAMBase): a trap
		// to M-mode faults on mtvec 0 and the machine stops (lockup).
		m.startSupervisor(f.Entry, 0, 0)
		m.attachTimer(true)
	} else {
		for _, h := range m.harts {
			h.PC = f.Entry
		}
		m.attachTimer(false)
	}
	syms, _ := f.Symbols()
	for _, s := range syms {
		switch s.Name {
		case "tohost":
			if m.htif == nil {
				m.htif = &htif{}
			}
			m.htif.tohost = s.Value
		case "fromhost":
			if m.htif == nil {
				m.htif = &htif{}
			}
			m.htif.fromhost = s.Value
		}
	}
	if m.htif != nil && m.htif.tohost == 0 {
		m.htif = nil
	}
	return nil
}

// checkInitrd recognises the archive formats Linux can unpack as an
// initramfs: a newc cpio, or one of the compressions the kernel may support.
func checkInitrd(b []byte) error {
	for _, magic := range []string{"070701", "070702", "\x1f\x8b", "\xfd7zXZ", "\x28\xb5\x2f\xfd", "BZh", "\x5d\x00\x00", "\x89LZO", "\x02\x21\x4c\x18"} {
		if bytes.HasPrefix(b, []byte(magic)) {
			return nil
		}
	}
	return errors.New("initrd: not an initramfs (neither a newc cpio archive nor a compressed one)")
}
