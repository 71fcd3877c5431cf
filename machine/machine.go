// Package machine is the ftvm board: RAM with dirty tracking, the bus, the
// CLINT, PLIC, UART, syscon and virtio-mmio devices, the SBI firmware built
// into the machine, the device tree and the loaders.
//
// A Machine is deterministic: what it does is a function of its
// configuration (images included) and of the calls made to it. The only
// ways in are Run (execute up to an instruction count) and Deliver (an
// external event, applied between Run calls); the ways out are the output
// callbacks, each called with the instruction count that produced the
// output. The package never touches the host: no os, net, time or
// goroutines.
package machine

import (
	"errors"
	"fmt"

	"ftvm/devices"
	"ftvm/riscv"
	"ftvm/riscv/jit"
	"ftvm/virtio"
	"ftvm/vm"
)

// Memory map (QEMU's virt board, which Linux's device-tree drivers accept).
const (
	SysconBase = 0x100000
	CLINTBase  = 0x2000000
	PLICBase   = 0xc000000
	UARTBase   = 0x10000000
	VirtioBase = 0x10001000
	VirtioSize = 0x1000
	RAMBase    = 0x80000000
	KernelBase = RAMBase + 0x200000

	uartIRQ   = 10
	rtcIRQ    = 11
	virtioIRQ = 1 // first virtio slot's PLIC source

	// TimebaseHz is the frequency of mtime seen by the guest.
	TimebaseHz = 10_000_000
)

// Outputs are the vm package's: where the guest's console bytes and
// transmitted frames go.
type Outputs = vm.Outputs

// Config describes a machine.
type Config struct {
	MemoryMiB int
	// Linux boot: Kernel is a RISC-V Linux Image, Initrd optional.
	Kernel  []byte
	Initrd  []byte
	Cmdline string
	// DTB replaces the generated device tree. It is validated against the
	// machine and gets /chosen filled in (command line, initrd, rng-seed).
	DTB []byte
	// Bare-metal boot: a static RISC-V ELF started in M-mode (HTIF
	// tohost/fromhost honoured). Exclusive with Kernel.
	ELF []byte

	Disk         vm.Disk // optional
	DiskReadOnly bool
	// SharedDisk is a second virtio-blk device, always read-only: an image
	// of which every replica and every replay has an identical copy (a
	// root filesystem), so snapshots, checkpoints and state transfers
	// never carry its contents. SharedDiskID names those contents (the
	// caller's SHA-256 of the image); a restore checks it.
	SharedDisk   vm.Disk
	SharedDiskID [32]byte
	Net          bool // attach a virtio-net device
	MAC          [6]byte

	// RNGSeed is handed to the guest in the device tree's /chosen/rng-seed
	// (default: derived from Cmdline). It is configuration, not an input.
	RNGSeed []byte

	// WallClock is the real time, in nanoseconds since 1970, at which the
	// guest's clock starts (mtime 0). The real-time clock shows it plus the
	// guest's elapsed time. It is configuration, like RNGSeed: the same on
	// every replica and replay.
	WallClock uint64

	// InstructionsPerTick sets the guest's nominal speed (default 10, that
	// is 100 M instructions per guest second at the 10 MHz timebase). With
	// several harts it is the speed of the machine as a whole: time follows
	// the instructions of all harts together.
	InstructionsPerTick uint64

	// Harts is the number of harts, 1 to MaxHarts (0 means 1). A Linux
	// guest starts on hart 0 and the others wait for the SBI's hart_start;
	// a bare-metal ELF starts on every hart at once, in M-mode.
	Harts int
	// Quantum is how many instructions a hart runs before the next one
	// takes over when the harts are interleaved on one thread (default
	// DefaultQuantum). It is part of the machine's definition: a replay
	// must use the same.
	Quantum uint64
	// Parallel runs the harts at the same time, one host thread each
	// (parallel.go). The run is then not deterministic: it cannot be
	// recorded, replayed or replicated by replay.
	Parallel bool
	// ELFSupervisor starts a bare-metal ELF in S-mode on hart 0, with the
	// machine's SBI as for a Linux kernel (the other harts wait for an
	// SBI hart_start), instead of in M-mode on every hart.
	ELFSupervisor bool

	// Exec is the execution engine, ExecInterp or ExecJIT (empty:
	// DefaultExec). It changes speed, never results.
	Exec string

	Outputs Outputs
}

// The stop reasons and the events are the vm package's (the machine is a
// vm.Engine), named here without the prefix for the machine's own code.
const (
	StopLimit    = vm.StopLimit
	StopIdle     = vm.StopIdle
	StopPowerOff = vm.StopPowerOff
	StopReboot   = vm.StopReboot
	StopLockup   = vm.StopLockup
)

type (
	Event        = vm.Event
	ConsoleInput = vm.ConsoleInput
	NetReceive   = vm.NetReceive
	AdvanceTime  = vm.AdvanceTime
)

var (
	_ vm.Engine = (*Machine)(nil)
	_ vm.Pauser = (*Machine)(nil)
)

// MaxHarts is the largest number of harts a machine may have.
const MaxHarts = 8

// Machine is one ftvm virtual machine.
type Machine struct {
	cfg   Config
	ram   []byte
	harts []*riscv.Hart
	hsm   []hsmState // each hart's SBI HSM state (smp.go)
	sched sched      // how the harts take turns (sched.go)
	par   *parallel  // non-nil in parallel mode (parallel.go)

	clock    clock
	clint    *devices.CLINT
	plic     *devices.PLIC
	uart     *devices.UART
	syscon   *devices.Syscon
	blk      *virtio.Block
	net      *virtio.Net
	blkTr    *virtio.MMIO // transports, nil when the device is absent
	netTr    *virtio.MMIO
	rtc      *devices.RTC
	shared   *virtio.Block // the read-only shared disk (SharedDisk)
	sharedTr *virtio.MMIO
	mmio     []region

	// Set by the syscon, SBI SRST or HTIF when the guest stops itself.
	stopped  bool
	stop     vm.StopReason
	exitCode uint32

	paused bool // Pause was called
	// The digest's page hashes (digest.go): groupPages[g] holds the
	// SHA-256 of pages 64g to 64g+63 (nil while none of them was ever
	// written), groupSums[g] the hash of those 64 hashes.
	groupPages []*pageGroup
	groupSums  [][32]byte
	htif       *htif
	sbiActive  bool
	dtb        []byte
	idleSkip   bool

	// Dirty pages not yet seen by the digest, and by each other consumer
	// (dirty.go): the harts' bitmaps are folded into all of them.
	digestDirty []uint64
	dirtyLogs   []*dirtyLog
	// written: the pages ever written, up to the last fold (ram.go).
	written []uint64

	jits []*jit.JIT   // the translators (one per hart), when cfg.Exec is ExecJIT
	disk *trackedDisk // the disk as the block device sees it (nil: none)
	ck   ckState      // in-memory checkpoints (checkpoint.go)
}

type region struct {
	base, size uint64
	dev        devices.MMIO
}

// New builds a machine from cfg. Errors name what is wrong with the
// configuration or the images.
func New(cfg Config) (*Machine, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	return build(cfg, nil)
}

// Restart builds a new machine from cfg as New does, for a guest that
// rebooted: in m's memory when the size is the same, cleared where the
// guest wrote it. m must not be used afterwards. New memory would come
// from the Go heap, which hands freed memory back by zeroing all of it:
// a guest that reboots would make all of its RAM resident.
func (m *Machine) Restart(cfg Config) (*Machine, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	var ram []byte
	if uint64(len(m.ram)) == uint64(cfg.MemoryMiB)<<20 {
		ram = m.ram
		m.writtenPages(func(p int) { clear(ram[p*pageSize : (p+1)*pageSize]) })
	}
	*m = Machine{stopped: true, stop: StopReboot}
	return build(cfg, ram)
}

func validate(cfg *Config) error {
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 256
	}
	if cfg.MemoryMiB < 16 || cfg.MemoryMiB > 16384 {
		return fmt.Errorf("memory size %d MiB: must be between 16 and 16384 MiB", cfg.MemoryMiB)
	}
	if (cfg.Kernel == nil) == (cfg.ELF == nil) {
		return errors.New("exactly one of a kernel image or a bare-metal ELF is required")
	}
	if cfg.Harts < 0 || cfg.Harts > MaxHarts {
		return fmt.Errorf("%d harts: must be between 1 and %d", cfg.Harts, MaxHarts)
	}
	var err error
	cfg.Exec, err = checkExec(cfg.Exec)
	return err
}

// build builds a machine from a validated cfg in ram (nil: new memory) and
// loads its images.
func build(cfg Config, ram []byte) (*Machine, error) {
	m, err := newBoard(cfg, ram)
	if err != nil {
		return nil, err
	}
	if cfg.ELF != nil {
		err = m.bootELF(cfg.ELF)
	} else {
		err = m.bootLinux()
	}
	if err != nil {
		return nil, err
	}
	if cfg.Parallel {
		m.startParallel()
	}
	return m, nil
}

// newBoard builds the machine's hardware from a validated cfg, with the
// hart at reset and RAM empty (ram nil) or the given image of
// cfg.MemoryMiB MiB; booting or restoring fills them.
func newBoard(cfg Config, ram []byte) (*Machine, error) {
	if cfg.InstructionsPerTick == 0 {
		cfg.InstructionsPerTick = 10
	}
	if cfg.Harts == 0 {
		cfg.Harts = 1
	}
	if cfg.Quantum == 0 {
		cfg.Quantum = DefaultQuantum
	}
	if ram == nil {
		ram = make([]byte, cfg.MemoryMiB<<20)
	}
	m := &Machine{cfg: cfg, ram: ram, idleSkip: true}
	m.clock.ipt = cfg.InstructionsPerTick
	m.harts = make([]*riscv.Hart, cfg.Harts)
	m.hsm = make([]hsmState, cfg.Harts)
	var plicLines []devices.IRQLine
	for i := range m.harts {
		h := riscv.New(m.bus(i), m.ram, RAMBase, RAMBase)
		h.SetHartID(uint64(i))
		if cfg.Harts > 1 {
			h.SetYieldHints(true)
			h.SetPeers(m.harts)
		}
		m.harts[i] = h
		plicLines = append(plicLines, m.line(i, riscv.IntMEI), m.line(i, riscv.IntSEI))
	}
	m.sched.init(cfg.Harts, cfg.Quantum)
	m.digestDirty = make([]uint64, len(m.harts[0].Dirty()))
	m.written = make([]uint64, len(m.harts[0].Dirty()))

	m.plic = devices.NewPLIC(plicLines...)
	m.uart = devices.NewUART(m.plic.Source(uartIRQ), func(b byte) { m.emitConsole([]byte{b}) })
	m.syscon = devices.NewSyscon(m.sysconEvent)
	m.addRegion(SysconBase, devices.SysconSize, m.syscon)
	m.addRegion(PLICBase, devices.PLICSize, m.plic)
	m.addRegion(UARTBase, devices.UARTSize, m.uart)
	m.rtc = devices.NewRTC(m.wallClock)
	m.addRegion(devices.RTCBase, devices.RTCSize, m.rtc)
	slot := 0
	if cfg.Disk != nil {
		m.disk = newTrackedDisk(cfg.Disk)
		if cfg.Outputs.Disk != nil {
			m.disk.written = func(off int64, p []byte) { cfg.Outputs.Disk(m.count(), off, p) }
		}
		m.blk = virtio.NewBlock(m.disk, cfg.DiskReadOnly)
		m.blkTr = virtio.NewMMIO(m.blk, ramDMA{m}, m.plic.Source(virtioIRQ+slot))
		m.blkTr.SetPace(m.devicePace())
		m.addRegion(VirtioBase+uint64(slot)*VirtioSize, VirtioSize, m.blkTr)
		slot++
	}
	if cfg.Net {
		m.net = virtio.NewNet(cfg.MAC, netSink{m})
		m.netTr = virtio.NewMMIO(m.net, ramDMA{m}, m.plic.Source(virtioIRQ+slot))
		m.netTr.SetPace(m.devicePace())
		m.addRegion(VirtioBase+uint64(slot)*VirtioSize, VirtioSize, m.netTr)
		slot++
	}
	if cfg.SharedDisk != nil {
		m.shared = virtio.NewBlock(cfg.SharedDisk, true)
		m.sharedTr = virtio.NewMMIO(m.shared, ramDMA{m}, m.plic.Source(virtioIRQ+slot))
		m.sharedTr.SetPace(m.devicePace())
		m.addRegion(VirtioBase+uint64(slot)*VirtioSize, VirtioSize, m.sharedTr)
	}
	if err := m.attachEngine(); err != nil {
		return nil, err
	}
	return m, nil
}

// wallClock is what the real-time clock shows before the guest sets it:
// the configured origin plus the guest's elapsed time.
func (m *Machine) wallClock() uint64 {
	return m.cfg.WallClock + m.clock.now(m.count())*(1_000_000_000/TimebaseHz)
}

// The devices' bandwidth in guest time (virtio.Pace): a guest cannot make
// a notification cost the host more than deviceBurst bytes of work plus
// one request, nor more than deviceBytesPerTick per tick over time. At the
// 10 MHz timebase that is 320 MB per guest second, far above what the
// guest's disk and network use, and at the interpreter's speed (about one
// guest second per second) a small part of the host's time.
const (
	deviceBytesPerTick = 32
	deviceBurst        = 16 << 20
)

func (m *Machine) devicePace() virtio.Pace {
	return virtio.Pace{Now: m.mtime, Changed: m.timerChanged, BytesPerTick: deviceBytesPerTick, Burst: deviceBurst}
}

// attachTimer connects the CLINT. With the SBI in the machine (a Linux
// guest in S-mode) the timer the guest programs through set_timer raises
// STIP directly, as OpenSBI does in software, and SBI IPIs set SSIP; a
// bare-metal program in M-mode gets MTIP and MSIP.
func (m *Machine) attachTimer(sbi bool) {
	msip, mtip := uint(riscv.IntMSI), uint(riscv.IntMTI)
	if sbi {
		msip, mtip = riscv.IntSSI, riscv.IntSTI
		m.sbiActive = true
		for _, h := range m.harts {
			h.EcallHook = m.sbiCall
		}
	}
	lines := make([]devices.HartLines, len(m.harts))
	for i := range lines {
		lines[i] = devices.HartLines{Soft: m.line(i, msip), Timer: m.line(i, mtip)}
	}
	m.clint = devices.NewCLINT(m.mtime, lines...)
}

// line is hart i's interrupt input bit, as a device sees it.
func (m *Machine) line(i int, bit uint) devices.IRQLine {
	return devices.IRQFunc(func(l bool) { m.setLine(i, bit, l) })
}

// setLine drives hart i's interrupt input bit. Harts interleaved on one
// thread are driven directly; in parallel mode a hart other than the
// caller's is driven through its mailbox (parallel.go).
func (m *Machine) setLine(i int, bit uint, level bool) {
	if m.par != nil {
		m.par.setLine(i, bit, level)
		return
	}
	m.harts[i].SetInterrupt(bit, level)
}

func (m *Machine) addRegion(base, size uint64, dev devices.MMIO) {
	m.mmio = append(m.mmio, region{base, size, dev})
}

// DeviceTree returns the device tree blob handed to the guest (nil for a
// bare-metal program).
func (m *Machine) DeviceTree() []byte { return m.dtb }

// Instret returns the number of instructions executed so far, by all harts
// together: the machine's position, in which events, outputs and replay
// are expressed.
func (m *Machine) Instret() uint64 { return m.count() }

// Hart returns hart i, for debuggers and tests. Between Run calls it may
// be read and written; CurrentHart says which one executes next.
func (m *Machine) Hart(i int) *riscv.Hart { return m.harts[i] }

// NumHarts is the number of harts.
func (m *Machine) NumHarts() int { return len(m.harts) }

// Parallel reports whether the harts run in parallel (Config.Parallel).
func (m *Machine) Parallel() bool { return m.par != nil }

// ExitCode is the guest's exit status after StopPowerOff (0 = success).
func (m *Machine) ExitCode() uint32 { return m.exitCode }

// SetIdleSkip chooses what an idle guest with a timer armed does: with skip
// on (the default) Run jumps the clock to the timer at once; with it off Run
// returns StopIdle so the caller can pace guest time against the host's and
// Deliver an AdvanceTime event.
func (m *Machine) SetIdleSkip(on bool) { m.idleSkip = on }

// TicksPerSecond is the timer frequency (the device tree's timebase).
func (m *Machine) TicksPerSecond() uint64 { return TimebaseHz }

// Now returns the current mtime.
func (m *Machine) Now() uint64 { return m.clock.now(m.count()) }

// Deadline returns the mtime of the next timed event (a hart's timer
// firing, a device resuming deferred work), or ^0 when none is to come.
func (m *Machine) Deadline() uint64 { return m.deadline() }

// deadline is the guest time of the next timed event: the guest's timer
// firing, or a device resuming work it deferred (virtio.Pace). A timer
// that has already fired is no event to come: its interrupt line is up,
// and if the guest has masked it, letting guest time run on (one
// instruction at a time, or by jumps while the guest waits for an
// interrupt it cannot take) changes nothing and would never end.
func (m *Machine) deadline() uint64 {
	dl := m.clint.Deadline()
	if dl <= m.mtime() {
		m.clint.Update() // the line is up (it normally is already)
		dl = ^uint64(0)
	}
	for _, tr := range [...]*virtio.MMIO{m.blkTr, m.netTr} {
		if tr != nil {
			dl = min(dl, tr.Deadline())
		}
	}
	return dl
}

// updateTimers brings the timer and the devices' deferred work up to the
// current guest time.
func (m *Machine) updateTimers() {
	m.clint.Update()
	for _, tr := range [...]*virtio.MMIO{m.blkTr, m.netTr} {
		if tr != nil {
			tr.Update()
		}
	}
}

// Pause makes the current Run return StopLimit after the instruction that
// is executing. It is meant for output callbacks that have seen what they
// were waiting for (a benchmark's console marker); the pause point is a
// deterministic function of the guest's output.
func (m *Machine) Pause() {
	m.paused = true
	m.haltRunning()
}

// timerChanged is called when the guest reprograms its timer in the middle
// of a Run: the hart must stop so that Run recomputes how far it may go
// before the timer fires. Otherwise the interrupt would be raised at the
// next slice boundary, and how the caller slices Run would become visible.
//
// In parallel mode each hart looks at the timers between slices anyway.
func (m *Machine) timerChanged() {
	if m.par == nil {
		m.haltRunning()
	}
}

// Deliver applies an event. For ConsoleInput it returns how many bytes the
// UART accepted (its FIFO is bounded: the caller keeps the rest for later);
// for NetReceive 1 if the frame was queued and 0 if it was dropped.
func (m *Machine) Deliver(ev Event) (int, error) {
	switch e := ev.(type) {
	case ConsoleInput:
		return m.uart.Input(e.Data), nil
	case NetReceive:
		if m.net == nil {
			return 0, errors.New("machine has no network device")
		}
		if m.net.Receive(e.Frame) {
			return 1, nil
		}
		return 0, nil
	case AdvanceTime:
		m.clock.advance(e.To, m.count())
		m.updateTimers()
		return 0, nil
	}
	return 0, fmt.Errorf("unknown event %T", ev)
}

func (m *Machine) emitConsole(b []byte) {
	if m.cfg.Outputs.Console != nil {
		m.cfg.Outputs.Console(m.count(), b)
	}
}

func (m *Machine) sysconEvent(a devices.PowerAction, code uint16) {
	switch a {
	case devices.PowerOff:
		m.halt(StopPowerOff, 0)
	case devices.PowerFail:
		m.halt(StopPowerOff, uint32(code))
	case devices.PowerReset:
		m.halt(StopReboot, 0)
	}
}

func (m *Machine) halt(r vm.StopReason, code uint32) {
	if m.stopped {
		return // the first stop wins (harts in parallel may race to it)
	}
	m.stopped, m.stop, m.exitCode = true, r, code
	m.haltRunning()
}

// Load is MMIO for the harts (riscv.System, through bus).
func (m *Machine) Load(pa uint64, size int) (uint64, bool) {
	for i := range m.mmio {
		r := &m.mmio[i]
		if pa-r.base < r.size {
			return r.dev.Read(pa-r.base, size), true
		}
	}
	if pa-CLINTBase < devices.CLINTSize {
		return m.clint.Read(pa-CLINTBase, size), true
	}
	return 0, false
}

// Store is MMIO for the harts (riscv.System, through bus).
func (m *Machine) Store(pa uint64, size int, v uint64) bool {
	for i := range m.mmio {
		r := &m.mmio[i]
		if pa-r.base < r.size {
			r.dev.Write(pa-r.base, size, v)
			return true
		}
	}
	if pa-CLINTBase < devices.CLINTSize {
		m.clint.Write(pa-CLINTBase, size, v)
		m.timerChanged()
		return true
	}
	return false
}

// Time is the time CSR: the CLINT's mtime.
func (m *Machine) Time() uint64 { return m.clint.Mtime() }

// bus returns the riscv.System of hart i. Interleaved harts use the
// machine directly; in parallel mode each access takes the device lock.
func (m *Machine) bus(i int) riscv.System {
	return &hartBus{m: m, hart: i}
}

// hartBus is one hart's view of the devices.
type hartBus struct {
	m    *Machine
	hart int
}

func (b *hartBus) Load(pa uint64, size int) (uint64, bool) {
	if p := b.m.par; p != nil {
		p.lock(b.hart)
		defer p.unlock()
	}
	return b.m.Load(pa, size)
}

func (b *hartBus) Store(pa uint64, size int, v uint64) bool {
	if p := b.m.par; p != nil {
		p.lock(b.hart)
		defer p.unlock()
	}
	return b.m.Store(pa, size, v)
}

func (b *hartBus) Time() uint64 {
	if p := b.m.par; p != nil {
		return p.time()
	}
	return b.m.Time()
}

// ramDMA gives devices bounds-checked access to RAM.
type ramDMA struct{ m *Machine }

func (d ramDMA) ReadPhys(addr uint64, p []byte) bool {
	off, ok := d.m.ramRange(addr, uint64(len(p)))
	if !ok {
		return false
	}
	copy(p, d.m.ram[off:])
	return true
}

func (d ramDMA) WritePhys(addr uint64, p []byte) bool {
	off, ok := d.m.ramRange(addr, uint64(len(p)))
	if !ok {
		return false
	}
	copy(d.m.ram[off:], p)
	d.m.noteWrite(addr, uint64(len(p)))
	return true
}

func (m *Machine) ramRange(addr, n uint64) (uint64, bool) {
	off := addr - RAMBase
	if addr < RAMBase || off > uint64(len(m.ram)) || n > uint64(len(m.ram))-off {
		return 0, false
	}
	return off, true
}

type netSink struct{ m *Machine }

func (s netSink) Transmit(frame []byte) {
	if s.m.cfg.Outputs.Net != nil {
		s.m.cfg.Outputs.Net(s.m.count(), frame)
	}
}

// HasNet reports whether the machine has a virtio-net device, MAC its
// address, and HasDisk whether it has a virtio-blk device: what a host must
// connect to a restored machine.
func (m *Machine) HasNet() bool  { return m.net != nil }
func (m *Machine) MAC() [6]byte  { return m.cfg.MAC }
func (m *Machine) HasDisk() bool { return m.blk != nil }

// HasSharedDisk reports whether the machine has a read-only shared disk
// (Config.SharedDisk), which a host must supply to a restored machine.
func (m *Machine) HasSharedDisk() bool { return m.shared != nil }
