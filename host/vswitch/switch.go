// Package vswitch is ftvm's user-space virtual Ethernet switch: the network
// a replicated guest is attached to when ftvm runs without root on one
// machine. The guest's peers must not live inside either replica process,
// or they would die with the primary; so the replicas connect to this
// switch, a process of its own, and clients reach the guest through its
// port forwards.
//
// Ports are UDP peers on loopback, one datagram per Ethernet frame (the
// protocol is described in package ftvm/host/netdev, whose SwitchPort is
// the replica's end). The switch learns source MAC addresses; a MAC that
// shows up on another port moves there with that frame, which is how a
// backup's announcement (netdev.Announce) redirects the guest's traffic at
// failover. Broadcast, multicast and unknown unicast frames are flooded to
// every other port. Sending never waits: a port that cannot take a frame
// at once loses it, and the loss is counted.
//
// The switch has an interface of its own on the virtual LAN, a gVisor
// netstack (default 10.0.2.2/24). Each forward listens on a host TCP
// address and splices every accepted client to a connection the netstack
// opens to the guest. Those guest-side connections are tuned to outlive a
// failover: retransmissions continue for Config.GuestTimeout (default 60 s)
// of silence, at most half a second apart, so the guest reappearing on
// another port is noticed within half a second.
package vswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/host/netdev"

	"ftvm/host/netstack"
)

// Defaults of Config.
const (
	DefaultListen       = "127.0.0.1:7000"
	DefaultPortTimeout  = 10 * time.Second
	DefaultMACTimeout   = 5 * time.Minute
	DefaultGuestTimeout = 60 * time.Second
	DefaultMaxPorts     = 64
	// maxMACs bounds the learning table against a port inventing source
	// addresses.
	maxMACs = 4096
	// localQueue bounds the frames waiting for the netstack.
	localQueue = 1024
)

var (
	// DefaultIP is the switch's own address and the LAN's prefix, the
	// address the default guest uses as its peer (as in QEMU's user-mode
	// network).
	DefaultIP = netip.MustParsePrefix("10.0.2.2/24")
	// DefaultMAC is the switch interface's address: locally administered
	// (02:...) and fixed, so a guest's ARP cache stays right when the
	// switch restarts; the last four bytes spell 10.0.2.2.
	DefaultMAC = [6]byte{0x02, 0x00, 0x0a, 0x00, 0x02, 0x02}
)

// Config configures a Switch. Zero fields take the defaults above.
type Config struct {
	// Listen is the UDP address the ports send to. It should stay on
	// loopback: anyone who can reach it joins the LAN.
	Listen string
	// IP is the switch's interface address with the LAN's prefix length.
	IP netip.Prefix
	// MAC is the switch interface's Ethernet address.
	MAC [6]byte
	// Forwards are the TCP port forwards to guests.
	Forwards []Forward
	// PortTimeout: a port silent this long (no frame, no hello) is
	// forgotten with the addresses learnt on it.
	PortTimeout time.Duration
	// MACTimeout: a learnt address not seen as a source this long is
	// forgotten (frames to it are flooded again).
	MACTimeout time.Duration
	// GuestTimeout is how long a forwarded connection keeps
	// retransmitting to a silent guest before giving up on it.
	GuestTimeout time.Duration
	// MaxPorts bounds the number of ports.
	MaxPorts int
	// Logger receives structured logs (nil: none).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if !c.IP.IsValid() {
		c.IP = DefaultIP
	}
	if c.MAC == ([6]byte{}) {
		c.MAC = DefaultMAC
	}
	if c.PortTimeout <= 0 {
		c.PortTimeout = DefaultPortTimeout
	}
	if c.MACTimeout <= 0 {
		c.MACTimeout = DefaultMACTimeout
	}
	if c.GuestTimeout <= 0 {
		c.GuestTimeout = DefaultGuestTimeout
	}
	if c.MaxPorts <= 0 {
		c.MaxPorts = DefaultMaxPorts
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Switch is a running virtual switch. New binds its sockets, Serve runs it.
type Switch struct {
	cfg   Config
	log   *slog.Logger
	conn  *net.UDPConn
	raw   syscall.RawConn
	inet6 bool // the UDP socket is AF_INET6 (peers need IPv6 socket addresses)
	nic   *netstack.Stack
	fwds  []*forwarder

	closeOnce sync.Once
	served    chan struct{} // closed when Serve starts

	// mu guards the tables and the counters below; forwarding holds it
	// for one frame (the sends under it never block).
	mu       sync.Mutex
	ports    map[netip.AddrPort]*port
	local    *port
	macs     map[[6]byte]*macEntry
	junk     uint64
	invalid  uint64
	expired  uint64
	refused  uint64
	macMoves uint64
}

// port is one switch port: a UDP peer, or the switch's own interface.
type port struct {
	name     string
	addr     netip.AddrPort
	sa       unix.Sockaddr // nil for the local port
	lastSeen time.Time
	c        PortStats
}

type macEntry struct {
	port *port
	seen time.Time
}

// PortStats are one port's counters.
type PortStats struct {
	Name      string         // "udp:127.0.0.1:40123", or "local" for the switch's interface
	Addr      netip.AddrPort // the UDP peer (zero for the local port)
	FramesIn  uint64         // frames received from the port
	BytesIn   uint64
	FramesOut uint64 // frames sent to the port
	BytesOut  uint64
	Dropped   uint64        // frames for the port that it could not take at once
	Junk      uint64        // datagrams from the port that were neither a frame nor a hello
	MACs      []string      // addresses learnt on the port
	Idle      time.Duration // since the last datagram (zero for the local port)
}

// Stats is a snapshot of the switch's counters, for logs and metrics.
type Stats struct {
	Ports    []PortStats // the local port first, then by name
	Forwards []ForwardStats
	MACs     int    // addresses in the learning table
	MACMoves uint64 // times an address moved to another port
	Junk     uint64 // datagrams that were neither a frame nor a hello
	Invalid  uint64 // frames with a multicast source or the switch's own
	Expired  uint64 // ports forgotten after PortTimeout
	Refused  uint64 // datagrams from new peers refused because MaxPorts ports exist
	// The netstack's TCP counters: retransmissions and connections it gave
	// up on (show a guest's silence).
	TCPRetransmits, TCPTimeouts uint64
}

// New validates cfg and binds the switch's UDP socket and the forwards'
// listeners; nothing is served until Serve.
func New(cfg Config) (*Switch, error) {
	cfg.setDefaults()
	if !cfg.IP.Addr().Is4() || cfg.IP.Bits() < 8 || cfg.IP.Bits() > 30 {
		return nil, fmt.Errorf("vswitch: interface address %v: want an IPv4 address with a prefix length from 8 to 30", cfg.IP)
	}
	if cfg.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("vswitch: interface MAC %v is a multicast address", net.HardwareAddr(cfg.MAC[:]))
	}
	for _, f := range cfg.Forwards {
		if !cfg.IP.Contains(f.Guest.Addr()) || f.Guest.Addr() == cfg.IP.Addr() {
			return nil, fmt.Errorf("vswitch: forward %v: the guest address must be another host on the switch's network %v", f, cfg.IP.Masked())
		}
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("vswitch: listen address %q: %w", cfg.Listen, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("vswitch: %w", err)
	}
	// Room for bursts from all ports while the switch is descheduled.
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	s := &Switch{
		cfg: cfg, log: cfg.Logger, conn: conn,
		served: make(chan struct{}),
		ports:  make(map[netip.AddrPort]*port),
		macs:   make(map[[6]byte]*macEntry),
		local:  &port{name: "local"},
	}
	fail := func(err error) (*Switch, error) {
		s.Close()
		return nil, err
	}
	// Frames are sent with sendto(MSG_DONTWAIT) on the raw socket, which
	// needs socket addresses of the socket's own family.
	if s.raw, err = conn.SyscallConn(); err != nil {
		return fail(err)
	}
	var sa unix.Sockaddr
	s.raw.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) })
	if err != nil {
		return fail(fmt.Errorf("vswitch: getsockname: %w", err))
	}
	_, s.inet6 = sa.(*unix.SockaddrInet6)
	s.macs[cfg.MAC] = &macEntry{port: s.local}
	if s.nic, err = netstack.New(cfg.MAC, cfg.IP, localQueue, cfg.GuestTimeout); err != nil {
		return fail(err)
	}
	for _, f := range cfg.Forwards {
		l, err := net.Listen("tcp", f.Host)
		if err != nil {
			return fail(fmt.Errorf("vswitch: forward %v: %w", f, err))
		}
		s.fwds = append(s.fwds, &forwarder{f: f, l: l, conns: make(map[net.Conn]struct{})})
	}
	return s, nil
}

// Addr is the UDP address ports connect to (with the real port when
// Config.Listen asked for port 0).
func (s *Switch) Addr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// ForwardAddrs are the host addresses the forwards listen on, in the order
// of Config.Forwards.
func (s *Switch) ForwardAddrs() []net.Addr {
	var a []net.Addr
	for _, f := range s.fwds {
		a = append(a, f.l.Addr())
	}
	return a
}

// Config is the configuration in effect (defaults filled in).
func (s *Switch) Config() Config { return s.cfg }

// Close releases the sockets of a switch that is not being served. Serve
// closes them itself when its context ends.
func (s *Switch) Close() error {
	s.closeOnce.Do(func() {
		// Clients first, then the ports, then the stack under them.
		for _, f := range s.fwds {
			f.close()
		}
		s.conn.Close()
		if s.nic != nil {
			s.nic.Close()
		}
	})
	return nil
}

// Serve runs the switch until ctx is done, then closes it and returns nil.
// It returns an error if the switch cannot keep running (its socket
// failed). Serve may be called once.
func (s *Switch) Serve(ctx context.Context) error {
	select {
	case <-s.served:
		return errors.New("vswitch: Serve called twice")
	default:
		close(s.served)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		if err := s.readLoop(); err != nil && ctx.Err() == nil {
			errc <- err
			cancel()
		}
	})
	wg.Go(func() { s.nic.Run(ctx, func(f []byte) { s.input(s.local, f, time.Now()) }) })
	wg.Go(func() { s.janitor(ctx) })
	for _, f := range s.fwds {
		wg.Go(func() { f.serve(ctx, s.nic, s.log) })
	}
	<-ctx.Done()
	s.Close()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// readLoop receives datagrams from the ports until the socket is closed.
func (s *Switch) readLoop() error {
	// As large as any UDP datagram: a longer datagram would be silently
	// truncated, and an oversized one must be seen whole to be refused.
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var errno syscall.Errno
			if errors.As(err, &errno) && errno.Temporary() {
				continue
			}
			return fmt.Errorf("vswitch: receive: %w", err)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		s.datagram(from, buf[:n], time.Now())
	}
}

// datagram handles one datagram from a UDP peer.
func (s *Switch) datagram(from netip.AddrPort, b []byte, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ports[from]
	isHello := string(b) == netdev.SwitchHello
	if !isHello && (len(b) < netdev.EthernetHeaderLen || len(b) > netdev.MaxSwitchFrame) {
		// Junk never creates a port.
		s.junk++
		if p != nil {
			p.c.Junk++
		}
		return
	}
	if p == nil {
		if len(s.ports) >= s.cfg.MaxPorts {
			s.refused++
			if isHello {
				// Say so, or the port's owner would only hear that no
				// switch answers.
				s.send(s.sockaddr(from), []byte(netdev.SwitchFull))
			}
			return
		}
		p = &port{name: "udp:" + from.String(), addr: from, sa: s.sockaddr(from)}
		s.ports[from] = p
		s.log.Info("port up", "port", p.name)
	}
	p.lastSeen = now
	if isHello {
		s.send(p.sa, []byte(netdev.SwitchHelloAck))
		return
	}
	p.c.FramesIn++
	p.c.BytesIn += uint64(len(b))
	s.forwardLocked(p, b, now)
}

// input handles a frame from the local interface.
func (s *Switch) input(p *port, f []byte, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.c.FramesIn++
	p.c.BytesIn += uint64(len(f))
	s.forwardLocked(p, f, now)
}

// forwardLocked learns the frame's source and sends the frame on.
//
// Preconditions: s.mu is held; len(f) >= EthernetHeaderLen.
func (s *Switch) forwardLocked(in *port, f []byte, now time.Time) {
	dst, src := [6]byte(f[0:6]), [6]byte(f[6:12])
	if src[0]&1 != 0 || (src == s.cfg.MAC && in != s.local) {
		// No station sends from a group address, and only the local
		// port owns the switch's address: learning either would let a
		// port hijack traffic it must not get.
		s.invalid++
		return
	}
	s.learnLocked(src, in, now)
	if dst[0]&1 == 0 {
		if e, ok := s.macs[dst]; ok {
			// Known unicast. A frame for a station on its own port is
			// filtered, as a hardware switch does.
			if e.port != in {
				s.outputLocked(e.port, f)
			}
			return
		}
	}
	// Broadcast, multicast or unknown unicast: flood.
	for _, p := range s.ports {
		if p != in {
			s.outputLocked(p, f)
		}
	}
	if in != s.local {
		s.outputLocked(s.local, f)
	}
}

// learnLocked records that src is behind port in. A known address moves at
// once: that is how an announcement (or any frame) from a replica that
// just went live takes the guest's traffic away from the dead one.
//
// Preconditions: s.mu is held.
func (s *Switch) learnLocked(src [6]byte, in *port, now time.Time) {
	e := s.macs[src]
	if e == nil {
		if len(s.macs) >= maxMACs {
			return // still forwarded, by flooding
		}
		s.macs[src] = &macEntry{port: in, seen: now}
		s.log.Debug("address learnt", "mac", macString(src), "port", in.name)
		return
	}
	if e.port != in {
		s.macMoves++
		s.log.Info("address moved", "mac", macString(src), "from", e.port.name, "to", in.name)
		e.port = in
	}
	e.seen = now
}

// outputLocked sends a frame to one port without waiting.
//
// Preconditions: s.mu is held.
func (s *Switch) outputLocked(p *port, f []byte) {
	var ok bool
	if p == s.local {
		ok = s.nic.Deliver(f)
	} else {
		ok = s.send(p.sa, f) == nil
	}
	if !ok {
		p.c.Dropped++
		return
	}
	p.c.FramesOut++
	p.c.BytesOut += uint64(len(f))
}

// send writes one datagram to a peer. MSG_DONTWAIT turns a full socket
// buffer into an error (the frame is dropped) instead of a wait, so one
// slow port can never stall the switch.
func (s *Switch) send(sa unix.Sockaddr, b []byte) error {
	var serr error
	err := s.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, sa)
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

func (s *Switch) sockaddr(a netip.AddrPort) unix.Sockaddr {
	if s.inet6 {
		return &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
	}
	return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
}

// janitor forgets silent ports and stale addresses.
func (s *Switch) janitor(ctx context.Context) {
	tick := min(s.cfg.PortTimeout/4, time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.expire(now)
		}
	}
}

func (s *Switch) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, p := range s.ports {
		if now.Sub(p.lastSeen) > s.cfg.PortTimeout {
			delete(s.ports, a)
			s.expired++
			s.log.Info("port down", "port", p.name, "silent", now.Sub(p.lastSeen).Round(time.Millisecond))
		}
	}
	for mac, e := range s.macs {
		if e.port == s.local {
			continue
		}
		if s.ports[e.port.addr] != e.port || now.Sub(e.seen) > s.cfg.MACTimeout {
			delete(s.macs, mac)
		}
	}
}

// Stats returns the switch's counters.
func (s *Switch) Stats() Stats {
	now := time.Now()
	s.mu.Lock()
	st := Stats{
		MACs: len(s.macs), MACMoves: s.macMoves, Junk: s.junk, Invalid: s.invalid,
		Expired: s.expired, Refused: s.refused,
	}
	macs := make(map[*port][]string)
	for mac, e := range s.macs {
		macs[e.port] = append(macs[e.port], macString(mac))
	}
	ps := func(p *port) PortStats {
		c := p.c
		c.Name, c.Addr, c.MACs = p.name, p.addr, macs[p]
		slices.Sort(c.MACs)
		if p != s.local {
			c.Idle = now.Sub(p.lastSeen)
		}
		return c
	}
	st.Ports = append(st.Ports, ps(s.local))
	for _, p := range s.ports {
		st.Ports = append(st.Ports, ps(p))
	}
	s.mu.Unlock()
	slices.SortFunc(st.Ports[1:], func(a, b PortStats) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range s.fwds {
		st.Forwards = append(st.Forwards, f.stats())
	}
	st.TCPRetransmits, st.TCPTimeouts = s.nic.TCPCounters()
	return st
}

func macString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }
