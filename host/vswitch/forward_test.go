package vswitch

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"ftvm/host/netdev"
)

var (
	guestMAC  = [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	guestAddr = netip.MustParseAddrPort("10.0.2.15:7")
)

// testGuest stands in for a guest on the switch: a second netstack (with
// gVisor's default TCP settings, like a plain OS) that can be moved from one
// switch port to another, the way a restored replica continues the same
// guest on another port. While unplugged, frames are lost both ways.
type testGuest struct {
	t     testing.TB
	stack *stack.Stack
	ep    *channel.Endpoint
	mu    sync.Mutex
	port  *netdev.SwitchPort
}

func newTestGuest(t testing.TB) *testGuest {
	t.Helper()
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	g := &testGuest{t: t, stack: st, ep: channel.New(1024, 1500, tcpip.LinkAddress(guestMAC[:]))}
	if err := st.CreateNIC(1, ethernet.New(g.ep)); err != nil {
		t.Fatal(err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(guestAddr.Addr().As4()), PrefixLen: 24}}
	if err := st.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	st.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // guest -> switch
		var buf []byte
		for {
			pkt := g.ep.ReadContext(ctx)
			if pkt == nil {
				return
			}
			buf = buf[:0]
			for _, s := range pkt.AsSlices() {
				buf = append(buf, s...)
			}
			pkt.DecRef()
			if p := g.current(); p != nil {
				p.Transmit(buf)
			}
		}
	})
	wg.Go(func() { // switch -> guest
		for ctx.Err() == nil {
			p := g.current()
			if p == nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			select {
			case <-p.Ready():
			case <-time.After(10 * time.Millisecond):
			}
			for {
				f, ok := p.TryReceive()
				if !ok || g.current() != p {
					break
				}
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
				g.ep.InjectInbound(0, pkt)
				pkt.DecRef()
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		g.plug(nil)
		st.Close()
	})
	return g
}

func (g *testGuest) current() *netdev.SwitchPort {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.port
}

// plug attaches the guest to p (nil: unplugs it), closing the old port as a
// dead replica's port would be.
func (g *testGuest) plug(p *netdev.SwitchPort) {
	g.mu.Lock()
	old := g.port
	g.port = p
	g.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

func (g *testGuest) dial(s *Switch) *netdev.SwitchPort {
	g.t.Helper()
	p, err := netdev.DialSwitch(s.Addr().String())
	if err != nil {
		g.t.Fatal(err)
	}
	return p
}

// serveEcho runs a line echo server on the guest: each line comes back as
// "echo: LINE"; when the client half-closes, it answers "bye" and closes.
func (g *testGuest) serveEcho() {
	l, err := gonet.ListenTCP(g.stack, tcpip.FullAddress{NIC: 1, Port: guestAddr.Port()}, ipv4.ProtocolNumber)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					io.WriteString(c, "echo: "+sc.Text()+"\n")
				}
				if sc.Err() == nil {
					io.WriteString(c, "bye\n")
				}
			}()
		}
	}()
}

func forwardSwitch(t testing.TB, cfg Config) (*Switch, string) {
	t.Helper()
	cfg.Forwards = []Forward{{Host: "127.0.0.1:0", Guest: guestAddr}}
	s := startSwitch(t, cfg)
	return s, s.ForwardAddrs()[0].String()
}

func readLine(t *testing.T, r *bufio.Reader, c net.Conn, timeout time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read from the forward: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

func TestForward(t *testing.T) {
	s, addr := forwardSwitch(t, Config{})
	g := newTestGuest(t)
	g.serveEcho()
	g.plug(g.dial(s))

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, l := range []string{"ping", strings.Repeat("x", 100000)} {
		io.WriteString(c, l+"\n")
		if got := readLine(t, r, c, 20*time.Second); got != "echo: "+l {
			t.Fatalf("got %.40q, want %.40q", got, "echo: "+l)
		}
	}
	// Half-close: the guest sees the end of the request stream and can
	// still answer.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, r, c, 20*time.Second); got != "bye" {
		t.Fatalf("after half-close got %q, want bye", got)
	}
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("after bye: %q, %v; want a clean end of stream", b, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Forwards[0].Active != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fs := s.Stats().Forwards[0]
	if fs.Accepted != 1 || fs.Active != 0 || fs.ToGuest != 5+100001 || fs.FromGuest != 11+100007+4 {
		t.Errorf("forward stats %+v", fs)
	}
}

// moveGuest connects a client through the forward, then moves the guest to
// a new port after pause, with a request sent while it is gone, and checks
// the same connection gets the reply.
func moveGuest(t *testing.T, pause time.Duration) {
	s, addr := forwardSwitch(t, Config{})
	g := newTestGuest(t)
	g.serveEcho()
	g.plug(g.dial(s))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "before\n")
	if got := readLine(t, r, c, 20*time.Second); got != "echo: before" {
		t.Fatalf("got %q", got)
	}

	// The "primary" dies: its port goes away with everything sent to it.
	g.plug(nil)
	io.WriteString(c, "during\n")
	time.Sleep(pause)
	retrans := s.Stats().TCPRetransmits
	// The "backup" goes live on another port and announces the guest.
	p := g.dial(s)
	g.plug(p)
	live := time.Now()
	p.Transmit(netdev.Announce(guestMAC))
	if got := readLine(t, r, c, 60*time.Second); got != "echo: during" {
		t.Fatalf("after the move got %q", got)
	}
	t.Logf("pause %v: reply %v after the announcement; %d retransmissions meanwhile", pause,
		time.Since(live).Round(time.Millisecond), retrans)
	io.WriteString(c, "after\n")
	if got := readLine(t, r, c, 20*time.Second); got != "echo: after" {
		t.Fatalf("got %q", got)
	}
	st := s.Stats()
	if retrans == 0 || st.TCPTimeouts != 0 {
		t.Errorf("retransmissions %d, timeouts %d; want >0 and 0", retrans, st.TCPTimeouts)
	}
	// The guest's address is on the new port: moved by the announcement,
	// or learnt afresh if the old port had already expired.
	for _, ps := range st.Ports {
		if slices.Contains(ps.MACs, net.HardwareAddr(guestMAC[:]).String()) != (ps.Addr == p.LocalAddr().AddrPort()) {
			t.Errorf("port %s: MACs %v; the guest is on %v", ps.Name, ps.MACs, p.LocalAddr())
		}
	}
	if wantMoves := uint64(0); pause < DefaultPortTimeout {
		wantMoves = 1
		if st.MACMoves != wantMoves {
			t.Errorf("MACMoves %d, want %d", st.MACMoves, wantMoves)
		}
	}
}

func TestForwardSurvivesMove(t *testing.T) { moveGuest(t, 3*time.Second) }

// TestForwardSurvivesLongSilence checks the tolerance the package promises
// (a guest silent for 35 s); it takes that long, so it runs only with
// FTVM_LONG=1.
func TestForwardSurvivesLongSilence(t *testing.T) {
	if os.Getenv("FTVM_LONG") == "" {
		t.Skip("35 s; set FTVM_LONG=1")
	}
	moveGuest(t, 35*time.Second)
}

// TestForwardGuestTimeout checks the other side of the tolerance: a guest
// silent for longer than GuestTimeout is given up, and the client's
// connection ends instead of hanging.
func TestForwardGuestTimeout(t *testing.T) {
	s, addr := forwardSwitch(t, Config{GuestTimeout: 2 * time.Second})
	g := newTestGuest(t)
	g.serveEcho()
	g.plug(g.dial(s))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "hi\n")
	readLine(t, r, c, 20*time.Second)
	g.plug(nil)
	io.WriteString(c, "anyone?\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if l, err := r.ReadString('\n'); err == nil || os.IsTimeout(err) {
		t.Fatalf("read %q, %v: want the connection ended", l, err)
	}
	if st := s.Stats(); st.TCPTimeouts == 0 {
		t.Errorf("no netstack timeout counted: %+v", st)
	}
}

// BenchmarkFrameRoundTrip measures a small frame going from one UDP port
// through the switch to another and back (two switch traversals).
func BenchmarkFrameRoundTrip(b *testing.B) {
	s := startSwitch(b, Config{})
	dial := func() *netdev.SwitchPort {
		p, err := netdev.DialSwitch(s.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		return p
	}
	pa, pb := dial(), dial()
	ma, mb := mac(0xa), mac(0xb)
	fa, fb := frame(mb, ma, strings.Repeat("x", 50)), frame(ma, mb, strings.Repeat("y", 50))
	recv := func(p *netdev.SwitchPort) {
		for {
			if _, ok := p.TryReceive(); ok {
				return
			}
			<-p.Ready()
		}
	}
	// Teach the switch both addresses.
	pa.Transmit(fa)
	recv(pb)
	pb.Transmit(fb)
	recv(pa)
	b.ResetTimer()
	for range b.N {
		pa.Transmit(fa)
		recv(pb)
		pb.Transmit(fb)
		recv(pa)
	}
}

// benchForward is a switch with a forward to a test guest running the
// echo server.
func benchForward(b *testing.B) net.Conn {
	s, addr := forwardSwitch(b, Config{})
	g := newTestGuest(b)
	g.serveEcho()
	g.plug(g.dial(s))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkForwardRoundTrip measures a one-line request and its reply from
// a host TCP client through the forward, the switch's netstack, the switch
// and a SwitchPort to a guest netstack, and back.
func BenchmarkForwardRoundTrip(b *testing.B) {
	c := benchForward(b)
	r := bufio.NewReader(c)
	b.ResetTimer()
	for range b.N {
		io.WriteString(c, "ping\n")
		if l, err := r.ReadString('\n'); err != nil || l != "echo: ping\n" {
			b.Fatalf("got %q, %v", l, err)
		}
	}
}

// BenchmarkForwardThroughput measures bulk transfer through the forward:
// 64 KiB lines to the guest and echoed back (the bytes counted are one
// direction's).
func BenchmarkForwardThroughput(b *testing.B) {
	c := benchForward(b)
	line := strings.Repeat("z", 64<<10-1) + "\n"
	r := bufio.NewReaderSize(c, 1<<20)
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	go func() {
		for range b.N {
			io.WriteString(c, line)
		}
	}()
	for range b.N {
		if l, err := r.ReadString('\n'); err != nil || len(l) != len(line)+6 {
			b.Fatalf("got %d bytes, %v", len(l), err)
		}
	}
}
