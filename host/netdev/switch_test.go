package netdev

import (
	"bytes"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeSwitch is the switch side of the protocol, by hand.
type fakeSwitch struct {
	t *testing.T
	c *net.UDPConn
}

func newFakeSwitch(t *testing.T) *fakeSwitch {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &fakeSwitch{t, c}
}

// recv returns the next datagram and its sender, answering hellos.
func (s *fakeSwitch) recv() ([]byte, *net.UDPAddr) {
	s.t.Helper()
	buf := make([]byte, 65536)
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := s.c.ReadFromUDP(buf)
	if err != nil {
		s.t.Fatalf("fake switch: %v", err)
	}
	if string(buf[:n]) == SwitchHello {
		s.c.WriteToUDP([]byte(SwitchHelloAck), from)
	}
	return buf[:n], from
}

func TestSwitchPort(t *testing.T) {
	sw := newFakeSwitch(t)
	dialed := make(chan *SwitchPort)
	go func() {
		p, err := DialSwitch(sw.c.LocalAddr().String())
		if err != nil {
			t.Error(err)
		}
		dialed <- p
	}()
	d, from := sw.recv()
	if string(d) != SwitchHello {
		t.Fatalf("first datagram %q, want a hello", d)
	}
	p := <-dialed
	if p == nil {
		t.FailNow()
	}
	defer p.Close()
	if p.LocalAddr().String() != from.String() {
		t.Errorf("LocalAddr %v, switch saw %v", p.LocalAddr(), from)
	}

	// Switch to port: frames are queued, junk is counted and dropped.
	in := testFrame("from the switch")
	sw.c.WriteToUDP([]byte{1, 2, 3}, from)
	sw.c.WriteToUDP(make([]byte, MaxSwitchFrame+1), from)
	sw.c.WriteToUDP(in, from)
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Ready not signalled")
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); got == nil && time.Now().Before(deadline); {
		got, _ = p.TryReceive()
		time.Sleep(time.Millisecond)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("received %q, want %q", got, in)
	}
	// Port to switch: one frame, one datagram; invalid sizes never leave.
	out := testFrame("from the guest")
	p.Transmit([]byte{1, 2})
	p.Transmit(out)
	for {
		d, _ := sw.recv()
		if string(d) == SwitchHello {
			continue // a keepalive
		}
		if !bytes.Equal(d, out) {
			t.Fatalf("switch received %q, want %q", d, out)
		}
		break
	}
	// Keepalive: another hello within a few intervals.
	for {
		if d, _ := sw.recv(); string(d) == SwitchHello {
			break
		}
	}
	st := p.Stats()
	if st.RxFrames != 1 || st.RxJunk != 2 || st.TxFrames != 1 || st.TxErrors != 1 || st.LastAck.IsZero() {
		t.Errorf("stats %+v", st)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p.Transmit(out) // after Close: dropped, no panic
}

func TestDialSwitchNobody(t *testing.T) {
	// A port nobody listens on (bound, then closed).
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	_, err = DialSwitch(addr)
	if err == nil || !strings.Contains(err.Error(), "no ftvm switch answers at "+addr) {
		t.Fatalf("DialSwitch to nobody: %v", err)
	}
	if _, err := DialSwitch("not an address"); err == nil {
		t.Fatal("bad address accepted")
	}
}

func TestAnnounce(t *testing.T) {
	f := Announce([6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56})
	// RFC 903 layout, as QEMU's announce-self sends it.
	want := "ffffffffffff" + "525400123456" + "8035" + // broadcast, from the guest, RARP
		"0001" + "0800" + "06" + "04" + "0003" + // Ethernet/IPv4, 6+4 byte addresses, request reverse
		"525400123456" + "00000000" + // sender: the guest, no IP
		"525400123456" + "00000000" + // target: the guest, no IP
		strings.Repeat("00", 18) // padding to 60 bytes
	if got := hex.EncodeToString(f); got != want {
		t.Fatalf("Announce:\n got %s\nwant %s", got, want)
	}
}
