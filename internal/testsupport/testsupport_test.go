package testsupport

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestChecksum: the example of RFC 1071 section 3, and a checksum that
// verifies (the sum over data and checksum is 0).
func TestChecksum(t *testing.T) {
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("checksum %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	odd := []byte{1, 2, 3}
	c := Checksum(odd)
	if Checksum(append([]byte{1, 2, 3, 0}, byte(c>>8), byte(c))) != 0 {
		t.Error("an odd-length checksum does not verify")
	}
}

// TestFrames checks the headers the builders write: lengths, padding and
// checksums that verify.
func TestFrames(t *testing.T) {
	a := Station{MAC: [6]byte{2, 0, 0, 0, 0, 1}, IP: [4]byte{10, 0, 0, 1}}
	b := Station{MAC: [6]byte{2, 0, 0, 0, 0, 2}, IP: [4]byte{10, 0, 0, 2}}
	req := ARPRequest(a, b.IP)
	if len(req) != 60 || !bytes.Equal(req[:6], Broadcast[:]) || binary.BigEndian.Uint16(req[12:]) != EtherARP ||
		binary.BigEndian.Uint16(req[20:]) != 1 || !bytes.Equal(req[38:42], b.IP[:]) {
		t.Errorf("ARP request % x", req)
	}
	rep := ARPReply(b, a)
	if !bytes.Equal(rep[:6], a.MAC[:]) || binary.BigEndian.Uint16(rep[20:]) != 2 || !bytes.Equal(rep[22:28], b.MAC[:]) || !bytes.Equal(rep[28:32], b.IP[:]) {
		t.Errorf("ARP reply % x", rep)
	}
	data := []byte("hello, guest")
	f := TCP(a, b, TCPSegment{SrcPort: 40000, DstPort: 6379, Seq: 7, Ack: 9, Flags: TCPACK | TCPPSH, Window: 100,
		Options: []byte{2, 4, 5, 0xb4}, Data: data})
	ip := f[14:]
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if Checksum(ip[:20]) != 0 || total != 20+24+len(data) || ip[9] != ProtoTCP {
		t.Fatalf("IPv4 header % x", ip[:20])
	}
	tcp := ip[20:total]
	pseudo := append(append(append([]byte(nil), a.IP[:]...), b.IP[:]...), 0, ProtoTCP, 0, byte(len(tcp)))
	if Checksum(append(pseudo, tcp...)) != 0 || tcp[12]>>4 != 6 || tcp[13] != TCPACK|TCPPSH || !bytes.Equal(tcp[24:], data) {
		t.Errorf("TCP segment % x", tcp)
	}
	echo := ICMPEcho(a, b, 0x1234, 1, []byte("ping"))
	if len(echo) != 60 || Checksum(echo[34:34+8+4]) != 0 || echo[34] != 8 {
		t.Errorf("ICMP echo % x", echo)
	}
}

// TestProxy: bytes flow both ways, a hold queues them, dropped answers
// never arrive, a tampered answer has one bit flipped, a cut closes.
func TestProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c) // echo
		}
	}()
	p := NewProxy(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg string, wait time.Duration) (string, error) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, len(msg))
		n, err := io.ReadFull(c, buf)
		return string(buf[:n]), err
	}
	if got, err := roundTrip("abcd", 10*time.Second); got != "abcd" {
		t.Fatalf("echo %q (%v)", got, err)
	}
	p.Hold(true, false)
	if got, _ := roundTrip("efgh", 100*time.Millisecond); got != "" {
		t.Fatalf("held bytes arrived: %q", got)
	}
	p.Hold(false, false)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "efgh" {
		t.Fatalf("after the hold: %q (%v)", buf, err)
	}
	p.Tamper()
	if got, _ := roundTrip("ijkl", 10*time.Second); got == "ijkl" || len(got) != 4 {
		t.Fatalf("tampered answer %q", got)
	}
	p.DropAnswers(true)
	if got, _ := roundTrip("mnop", 100*time.Millisecond); got != "" {
		t.Fatalf("dropped answer arrived: %q", got)
	}
	p.Cut()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("the connection survived the cut")
	}
}

// TestMissing: without FTVM_REQUIRE_ALL a missing thing skips the test,
// with it the test fails.
func TestMissing(t *testing.T) {
	for _, v := range []string{"", "1"} {
		t.Run("FTVM_REQUIRE_ALL="+v, func(t *testing.T) {
			t.Setenv("FTVM_REQUIRE_ALL", v)
			ft := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Tool(ft, "no-such-tool-ftvm", "nothing")
			}()
			<-done
			if wantFail := v != ""; ft.failed != wantFail || ft.skipped == wantFail {
				t.Errorf("failed %v, skipped %v", ft.failed, ft.skipped)
			}
		})
	}
}

// fakeTB records Fatal and Skip instead of ending the test.
type fakeTB struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true; runtime.Goexit() }
func (f *fakeTB) Fatal(...any)          { f.failed = true; runtime.Goexit() }
