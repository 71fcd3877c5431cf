package netdev

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The switch port protocol, spoken between a SwitchPort and the virtual
// switch (package ftvm/host/vswitch) over UDP on loopback:
//
//   - One datagram carries exactly one Ethernet frame (destination MAC,
//     source MAC, EtherType, payload; no preamble, no FCS, no padding
//     required), in both directions. There is no header of our own, so a
//     frame costs one sendto and one recvfrom.
//   - A datagram shorter than an Ethernet header (14 bytes) is a control
//     message; it can never be mistaken for a frame. The port sends
//     SwitchHello when it starts and then every SwitchKeepalive, so the
//     switch knows an idle port (a backup that has not transmitted yet
//     still receives floods); the switch answers each hello with
//     SwitchHelloAck, which tells the port a switch is listening, or with
//     SwitchFull when it has no room for another port.
//   - The switch identifies a port by its UDP source address: a new
//     socket (a new process) is a new port. A port the switch has not
//     heard from for its port timeout is forgotten, with the MAC addresses
//     learnt on it.
const (
	SwitchHello    = "ftvmsw\x01H"
	SwitchHelloAck = "ftvmsw\x01A"
	SwitchFull     = "ftvmsw\x01F"
	// SwitchKeepalive is how often a port repeats its hello.
	SwitchKeepalive = time.Second
	// MaxSwitchFrame is the largest frame the switch forwards: jumbo
	// frames fit, anything larger is not Ethernet (the guest's NIC, with
	// no offloads, sends at most 1514 bytes).
	MaxSwitchFrame = 9216
	// EthernetHeaderLen is the size of destination, source and EtherType.
	EthernetHeaderLen = 14
)

// SwitchPort is a network backend connected to an ftvm virtual switch. Like
// the TAP backend, a reader goroutine queues received frames (bounded,
// tail drop) and the machine takes them with TryReceive between CPU runs;
// Transmit never blocks the machine: a frame the kernel cannot take at once
// is dropped and counted, as a NIC drops on a full ring.
type SwitchPort struct {
	conn    *net.UDPConn
	raw     syscall.RawConn
	addr    string
	in      *inbox
	done    chan struct{}
	stop    chan struct{}
	closing atomic.Bool
	once    sync.Once

	txFrames, txErrors, rxFrames, rxJunk atomic.Uint64
	lastAck                              atomic.Int64 // UnixNano of the last SwitchHelloAck
}

var _ Backend = (*SwitchPort)(nil)

// SwitchPortStats are a SwitchPort's counters.
type SwitchPortStats struct {
	TxFrames  uint64    // frames handed to the kernel for the switch
	TxErrors  uint64    // frames dropped on transmit (socket full, switch gone)
	RxFrames  uint64    // frames received from the switch
	RxDropped uint64    // received frames dropped because the queue was full
	RxJunk    uint64    // datagrams that were neither a frame nor an ack
	LastAck   time.Time // when the switch last answered a hello
}

// dialAttempts and dialWait bound how long DialSwitch waits for the
// switch's first answer: a missing switch is a configuration error the
// user should hear about at once, not a silent black hole.
const (
	dialAttempts = 10
	dialWait     = 200 * time.Millisecond
	// socketBuffer is the socket buffer size asked for on both sides of a
	// switch port.
	socketBuffer = 1 << 20
)

// DialSwitch connects to the virtual switch listening on the UDP address
// addr (host:port) and waits until it answers a hello. The port keeps
// itself known to the switch with a hello every SwitchKeepalive until
// Close.
func DialSwitch(addr string) (*SwitchPort, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("netdev: switch address %q: %w", addr, err)
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("netdev: switch %s: %w", addr, err)
	}
	// Room for bursts (a TCP window's worth of frames arriving while the
	// machine is busy running the guest); best effort, the kernel caps it.
	conn.SetReadBuffer(socketBuffer)
	conn.SetWriteBuffer(socketBuffer)
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &SwitchPort{
		conn: conn, raw: raw, addr: addr,
		in:   newInbox(DefaultQueueFrames),
		done: make(chan struct{}),
		stop: make(chan struct{}),
	}
	if err := p.handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	go p.reader()
	go p.keepalive()
	return p, nil
}

// handshake sends hellos until the switch acknowledges one. Frames that
// arrive before the ack (floods already reaching the new port) are kept.
func (p *SwitchPort) handshake() error {
	buf := make([]byte, MaxSwitchFrame+1)
	full := false
	for range dialAttempts {
		if _, err := p.conn.Write([]byte(SwitchHello)); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("netdev: switch %s: %w", p.addr, err)
		}
		deadline := time.Now().Add(dialWait)
		for {
			p.conn.SetReadDeadline(deadline)
			n, err := p.conn.Read(buf)
			if err != nil {
				// A timeout, or ECONNREFUSED from an ICMP port
				// unreachable: nobody listens yet (a switch may be
				// starting). Try again after the interval.
				time.Sleep(time.Until(deadline))
				break
			}
			if string(buf[:n]) == SwitchFull {
				full = true
				time.Sleep(time.Until(deadline))
				break
			}
			if p.datagram(buf[:n]) {
				p.conn.SetReadDeadline(time.Time{})
				return nil
			}
		}
	}
	if full {
		return fmt.Errorf("netdev: the ftvm switch at %s has no free port (see its -max-ports)", p.addr)
	}
	return fmt.Errorf("netdev: no ftvm switch answers at %s (is `ftvm switch -listen %s` running?)", p.addr, p.addr)
}

// datagram handles one datagram from the switch and reports whether it was
// a hello acknowledgement.
func (p *SwitchPort) datagram(b []byte) bool {
	switch {
	case string(b) == SwitchHelloAck:
		p.lastAck.Store(time.Now().UnixNano())
		return true
	case string(b) == SwitchFull:
		// The switch forgot this port and has no room for it again;
		// keep trying with the keepalive.
	case len(b) < EthernetHeaderLen || len(b) > MaxSwitchFrame:
		p.rxJunk.Add(1)
	default:
		p.rxFrames.Add(1)
		p.in.push(append([]byte(nil), b...))
	}
	return false
}

func (p *SwitchPort) reader() {
	defer close(p.done)
	buf := make([]byte, MaxSwitchFrame+1)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			if p.closing.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED: the switch is gone for now (an ICMP
			// port unreachable answered a hello). Keep listening: it
			// may come back on the same address.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.datagram(buf[:n])
	}
}

func (p *SwitchPort) keepalive() {
	t := time.NewTicker(SwitchKeepalive)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.send([]byte(SwitchHello))
		}
	}
}

// send writes one datagram without ever waiting: MSG_DONTWAIT makes a full
// socket buffer an error (the frame is dropped) instead of a sleep.
func (p *SwitchPort) send(b []byte) error {
	var serr error
	err := p.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, nil)
		return true // never ask the poller to wait for writability
	})
	if err != nil {
		return err
	}
	return serr
}

// Transmit sends one frame to the switch. It is safe to call from several
// goroutines (a datagram is written atomically), which lets Announce frames
// go out beside the machine's own.
func (p *SwitchPort) Transmit(frame []byte) {
	if p.closing.Load() {
		return
	}
	if len(frame) < EthernetHeaderLen || len(frame) > MaxSwitchFrame {
		p.txErrors.Add(1)
		return
	}
	if err := p.send(frame); err != nil {
		p.txErrors.Add(1)
		return
	}
	p.txFrames.Add(1)
}

// TryReceive implements Backend.
func (p *SwitchPort) TryReceive() ([]byte, bool) { return p.in.pop() }

// Ready implements Backend.
func (p *SwitchPort) Ready() <-chan struct{} { return p.in.ready }

// LocalAddr is the port's UDP address, which is how the switch names it.
func (p *SwitchPort) LocalAddr() *net.UDPAddr { return p.conn.LocalAddr().(*net.UDPAddr) }

// Stats reports the port's counters.
func (p *SwitchPort) Stats() SwitchPortStats {
	s := SwitchPortStats{
		TxFrames: p.txFrames.Load(), TxErrors: p.txErrors.Load(),
		RxFrames: p.rxFrames.Load(), RxDropped: p.in.drops(), RxJunk: p.rxJunk.Load(),
	}
	if ns := p.lastAck.Load(); ns != 0 {
		s.LastAck = time.Unix(0, ns)
	}
	return s
}

// Close stops the keepalive, closes the socket and waits for the reader to
// exit. The switch forgets the port after its timeout.
func (p *SwitchPort) Close() error {
	var err error
	p.once.Do(func() {
		p.closing.Store(true)
		close(p.stop)
		err = p.conn.Close()
		<-p.done
	})
	return err
}

// EtherTypeRARP is the EtherType of Reverse ARP (RFC 903).
const EtherTypeRARP = 0x8035

// Announce builds the frame a replica sends when it goes live, so that
// switches and bridges learn at once that mac is now behind this port
// (they learn from the source address of any frame; a broadcast reaches
// every one of them). Like QEMU's announce-self it is a RARP "request
// reverse" (RFC 903, opcode 3) from mac asking about mac itself: nobody
// answers RARP any more, and unlike a gratuitous ARP it needs no IP address
// and cannot disturb any host's ARP cache. The frame is padded to the
// 60-byte Ethernet minimum.
func Announce(mac [6]byte) []byte {
	f := make([]byte, 60)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // broadcast
	copy(f[6:12], mac[:])
	f[12], f[13] = EtherTypeRARP>>8, EtherTypeRARP&0xff
	a := f[14:]
	a[0], a[1] = 0, 1       // hardware type: Ethernet
	a[2], a[3] = 0x08, 0x00 // protocol type: IPv4
	a[4], a[5] = 6, 4       // hardware and protocol address lengths
	a[6], a[7] = 0, 3       // opcode: request reverse
	copy(a[8:14], mac[:])   // sender hardware address; sender IP stays 0
	copy(a[18:24], mac[:])  // target hardware address; target IP stays 0
	return f
}
