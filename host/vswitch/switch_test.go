package vswitch

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"ftvm/host/netdev"
)

const testEtherType = 0x88b5 // IEEE 802 local experimental: the netstack ignores it

// startSwitch runs a switch on an ephemeral loopback port for the test.
func startSwitch(t testing.TB, cfg Config) *Switch {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// udpPort is a raw switch port driven by the test: a UDP socket that
// speaks the protocol by hand.
type udpPort struct {
	t    *testing.T
	name string
	c    *net.UDPConn
}

func dialPort(t *testing.T, s *Switch, name string) *udpPort {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &udpPort{t: t, name: name, c: c}
	p.send([]byte(netdev.SwitchHello))
	if got := p.recv(); string(got) != netdev.SwitchHelloAck {
		t.Fatalf("%s: first datagram after hello is %q, not the ack", name, got)
	}
	return p
}

func (p *udpPort) send(b []byte) {
	p.t.Helper()
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("%s: send: %v", p.name, err)
	}
}

// recv returns the next datagram (failing the test after a generous
// timeout: loopback delivers in microseconds, the margin is for load).
func (p *udpPort) recv() []byte {
	p.t.Helper()
	buf := make([]byte, 65536)
	p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := p.c.Read(buf)
	if err != nil {
		p.t.Fatalf("%s: nothing received: %v", p.name, err)
	}
	return buf[:n]
}

// expect checks the next frames the port receives, in order, skipping
// hello acks.
func (p *udpPort) expect(frames ...[]byte) {
	p.t.Helper()
	for _, want := range frames {
		got := p.recv()
		for string(got) == netdev.SwitchHelloAck {
			got = p.recv()
		}
		if !bytes.Equal(got, want) {
			p.t.Fatalf("%s received %x, want %x", p.name, got, want)
		}
	}
}

func mac(last byte) [6]byte { return [6]byte{0x02, 0, 0, 0, 0, last} }

var (
	broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	multicast = [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
)

func frame(dst, src [6]byte, payload string) []byte {
	f := append(append(dst[:0:0], dst[:]...), src[:]...)
	f = binary.BigEndian.AppendUint16(f, testEtherType)
	return append(f, payload...)
}

// marker sends a broadcast from p and checks that each of the others
// receives it next. Because the switch handles datagrams in order and
// loopback keeps the order of one socket's datagrams, a port whose next
// frame is the marker received nothing before it: that is how the tests
// check that a frame did not go somewhere, without waiting for a timeout.
func marker(from *udpPort, src [6]byte, tag string, others ...*udpPort) {
	from.t.Helper()
	m := frame(broadcast, src, "marker "+tag)
	from.send(m)
	for _, o := range others {
		o.expect(m)
	}
}

func TestLearningAndFlooding(t *testing.T) {
	s := startSwitch(t, Config{})
	a, b, c := dialPort(t, s, "a"), dialPort(t, s, "b"), dialPort(t, s, "c")
	ma, mb, mc := mac(0xa), mac(0xb), mac(0xc)

	// A broadcast from a reaches b and c, never a itself; the switch
	// learns a.
	f := frame(broadcast, ma, "hello all")
	a.send(f)
	b.expect(f)
	c.expect(f)
	marker(b, mb, "1", a, c) // also: a did not get its own broadcast back

	// Known unicast goes to one port only.
	f = frame(ma, mb, "b to a")
	b.send(f)
	a.expect(f)
	marker(c, mc, "2", a, b) // c did not see b's frame for a
	f = frame(mb, ma, "a to b")
	a.send(f)
	b.expect(f)
	marker(a, ma, "3", b, c)

	// Unknown unicast and multicast are flooded.
	for _, dst := range [][6]byte{mac(0x99), multicast} {
		f = frame(dst, mc, "flood")
		c.send(f)
		a.expect(f)
		b.expect(f)
	}

	// A frame for a station on its own port is filtered.
	a.send(frame(ma, ma, "to myself"))
	marker(a, ma, "4", b, c)
	marker(b, mb, "5", a, c)

	st := s.Stats()
	if len(st.Ports) != 4 || st.Ports[0].Name != "local" {
		t.Fatalf("ports %+v, want local + 3", st.Ports)
	}
	byAddr := map[netip.AddrPort]PortStats{}
	for _, p := range st.Ports[1:] {
		byAddr[p.Addr] = p
	}
	pa := byAddr[a.c.LocalAddr().(*net.UDPAddr).AddrPort()]
	if !slices.Equal(pa.MACs, []string{net.HardwareAddr(ma[:]).String()}) {
		t.Errorf("port a learnt %v, want %v", pa.MACs, net.HardwareAddr(ma[:]))
	}
	// a sent: broadcast, a->b, marker 3, to-myself, marker 4.
	if pa.FramesIn != 5 || pa.FramesOut != 6 {
		t.Errorf("port a counters in %d out %d, want 5 and 6: %+v", pa.FramesIn, pa.FramesOut, pa)
	}
	if st.MACMoves != 0 || st.Junk != 0 || st.Invalid != 0 {
		t.Errorf("unexpected counters %+v", st)
	}
}

// TestMACMove is a failover in miniature: the guest's address is learnt on
// one port, then a second port announces it, and from that frame on the
// guest's traffic goes to the second port only.
func TestMACMove(t *testing.T) {
	s := startSwitch(t, Config{})
	primary, backup, client := dialPort(t, s, "primary"), dialPort(t, s, "backup"), dialPort(t, s, "client")
	guest, mc := [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}, mac(0xc)

	primary.send(frame(broadcast, guest, "primary is live"))
	client.expect(frame(broadcast, guest, "primary is live"))
	backup.expect(frame(broadcast, guest, "primary is live"))
	f := frame(guest, mc, "request 1")
	client.send(f)
	primary.expect(f)
	marker(client, mc, "1", primary, backup) // backup saw nothing of it

	// The primary dies; the backup goes live and announces the guest.
	ann := netdev.Announce(guest)
	backup.send(ann)
	client.expect(ann)
	primary.expect(ann) // flooded like any broadcast
	f = frame(guest, mc, "request 2")
	client.send(f)
	backup.expect(f)
	marker(client, mc, "2", primary, backup) // the old port no longer gets it

	st := s.Stats()
	if st.MACMoves != 1 {
		t.Errorf("MACMoves %d, want 1", st.MACMoves)
	}
	for _, p := range st.Ports {
		has := slices.Contains(p.MACs, net.HardwareAddr(guest[:]).String())
		if want := p.Addr == backup.c.LocalAddr().(*net.UDPAddr).AddrPort(); has != want {
			t.Errorf("port %s has the guest's address: %v, want %v", p.Name, has, want)
		}
	}
}

func TestPortAging(t *testing.T) {
	s := startSwitch(t, Config{PortTimeout: 300 * time.Millisecond})
	a, b := dialPort(t, s, "a"), dialPort(t, s, "b")
	ma, mb := mac(0xa), mac(0xb)
	b.send(frame(broadcast, mb, "b is here"))
	a.expect(frame(broadcast, mb, "b is here"))

	// a keeps itself alive with hellos; b goes silent and must be
	// forgotten, with its address.
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.send([]byte(netdev.SwitchHello))
		st := s.Stats()
		if len(st.Ports) == 2 && st.Expired == 1 && st.MACs == 1 {
			if st.Ports[1].Addr != a.c.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("the wrong port expired: %+v", st.Ports)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port b not forgotten: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// While b is unknown, a frame for it reaches no port; when b speaks
	// again it is a new port and frames for its (forgotten) address are
	// flooded to it.
	a.send(frame(mb, ma, "to b while it is gone"))
	b.send([]byte(netdev.SwitchHello))
	c := dialPort(t, s, "c")
	f := frame(mb, ma, "flooded to b and c")
	a.send(f)
	b.expect(f)
	c.expect(f)
}

// TestSwitchFull checks that a port refused for lack of room hears why.
func TestSwitchFull(t *testing.T) {
	s := startSwitch(t, Config{MaxPorts: 1})
	p, err := netdev.DialSwitch(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = netdev.DialSwitch(s.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "no free port") {
		t.Fatalf("second port on a 1-port switch: %v", err)
	}
	if st := s.Stats(); st.Refused == 0 || len(st.Ports) != 2 {
		t.Errorf("refused %d, ports %d", st.Refused, len(st.Ports))
	}
}

// TestJunk throws malformed datagrams at the switch from several sockets:
// short and oversized datagrams, frames with group or stolen source
// addresses, random bytes. The switch counts them, creates no port for
// junk, and keeps forwarding.
func TestJunk(t *testing.T) {
	s := startSwitch(t, Config{})
	a, b := dialPort(t, s, "a"), dialPort(t, s, "b")
	rng := rand.New(rand.NewPCG(1, 2))
	var junk, invalid int
	for i := range 2000 {
		var d []byte
		switch i % 5 {
		case 0: // shorter than a header, not a hello
			d = make([]byte, rng.IntN(netdev.EthernetHeaderLen))
		case 1: // too large to be a frame
			d = make([]byte, netdev.MaxSwitchFrame+1+rng.IntN(65507-netdev.MaxSwitchFrame-1))
		case 2: // multicast source address
			d = frame(mac(1), multicast, "bad source")
		case 3: // the switch's own address as source
			d = frame(broadcast, DefaultMAC, "impostor")
		case 4: // random bytes of a valid length, sometimes valid frames
			d = make([]byte, netdev.EthernetHeaderLen+rng.IntN(1500))
		}
		if i%5 < 2 || i%5 == 4 {
			for j := range d {
				d[j] = byte(rng.Uint32())
			}
		}
		if i%5 < 2 {
			junk++
		}
		if i%5 == 2 || i%5 == 3 || (i%5 == 4 && (d[6]&1 != 0 || [6]byte(d[6:12]) == DefaultMAC)) {
			invalid++
		}
		if string(d) == netdev.SwitchHello {
			continue
		}
		if i%50 == 0 {
			// Bursts from fresh sockets: none of them may become a port.
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			c.Write(make([]byte, 3))
			c.Close()
			junk++
		}
		a.c.Write(d) // loopback may drop some under load: counts are upper bounds
	}
	// The switch still works, and processed the junk before this frame.
	// b did not read during the flood, so its socket buffer overflowed:
	// resend until the frame gets through.
	f := frame(mac(0xb), mac(0xa), "still alive")
	buf := make([]byte, 65536)
	for tries := 0; ; tries++ {
		if tries == 100 {
			t.Fatalf("the switch stopped forwarding after the junk")
		}
		a.send(f)
		b.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := b.c.Read(buf)
		for err == nil && !bytes.Equal(buf[:n], f) {
			n, err = b.c.Read(buf)
		}
		if err == nil {
			break
		}
	}
	st := s.Stats()
	if st.Junk == 0 || st.Junk > uint64(junk) || st.Invalid == 0 || st.Invalid > uint64(invalid) {
		t.Errorf("junk %d (sent %d), invalid %d (sent %d)", st.Junk, junk, st.Invalid, invalid)
	}
	if len(st.Ports) != 3 {
		t.Errorf("junk created ports: %+v", st.Ports)
	}
	if st.MACs > 2+400+1 {
		t.Errorf("%d addresses learnt", st.MACs)
	}
}

// FuzzDatagram feeds arbitrary datagrams from a few peers straight into the
// switch (frames it forwards go to loopback addresses nobody listens on).
func FuzzDatagram(f *testing.F) {
	s, err := New(Config{Listen: "127.0.0.1:0", MaxPorts: 3})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Add(uint8(0), []byte(netdev.SwitchHello))
	f.Add(uint8(1), frame(broadcast, mac(1), "x"))
	f.Add(uint8(2), netdev.Announce(mac(2)))
	f.Add(uint8(3), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, from uint8, d []byte) {
		peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 9+uint16(from%5))
		s.datagram(peer, d, time.Now())
		s.expire(time.Now().Add(time.Duration(from) * time.Second))
		st := s.Stats()
		if len(st.Ports) > 1+3 {
			t.Fatalf("%d ports, MaxPorts is 3", len(st.Ports))
		}
	})
}

func TestParseForward(t *testing.T) {
	f, err := ParseForward("127.0.0.1:16379=10.0.2.15:6379")
	if err != nil || f.Host != "127.0.0.1:16379" || f.Guest != netip.MustParseAddrPort("10.0.2.15:6379") {
		t.Fatalf("got %+v, %v", f, err)
	}
	for _, bad := range []string{"", "127.0.0.1:16379", "16379=10.0.2.15:6379", "127.0.0.1:1=10.0.2.15",
		"127.0.0.1:1=[::1]:80", "127.0.0.1:1=10.0.2.15:0", "127.0.0.1:1=host:80"} {
		if _, err := ParseForward(bad); err == nil {
			t.Errorf("ParseForward(%q) accepted", bad)
		}
	}
	// A guest off the switch's network is refused by New.
	if _, err := New(Config{Listen: "127.0.0.1:0", Forwards: []Forward{{Host: "127.0.0.1:0", Guest: netip.MustParseAddrPort("10.0.3.15:80")}}}); err == nil {
		t.Errorf("forward to another network accepted")
	}
	if _, err := New(Config{Listen: "127.0.0.1:0", IP: netip.MustParsePrefix("10.0.2.2/32")}); err == nil {
		t.Errorf("/32 interface accepted")
	}
}
