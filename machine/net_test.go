package machine

import (
	"bytes"
	"encoding/binary"
	"testing"
)

var (
	hostMAC  = []byte{0x02, 0, 0, 0, 0, 2}
	guestMAC = [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	hostIP   = []byte{10, 0, 2, 2}
	guestIP  = []byte{10, 0, 2, 15}
)

func arpRequest() []byte {
	f := append([]byte{}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, hostMAC...)
	f = append(f, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	f = append(f, hostMAC...)
	f = append(f, hostIP...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, guestIP...)
	return append(f, make([]byte, 18)...) // pad to the Ethernet minimum
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func icmpEcho(payload []byte) []byte {
	icmp := append([]byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}, payload...)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0}
	ip = append(ip, hostIP...)
	ip = append(ip, guestIP...)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(icmp)))
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	f := append(append(append([]byte{}, guestMAC[:]...), hostMAC...), 0x08, 0x00)
	return append(append(f, ip...), icmp...)
}

// TestGuestNetwork drives the real guest's network stack in-process through
// the virtio-net device: an ARP request must get a reply, and an ICMP echo
// request an echo reply carrying the same payload.
func TestGuestNetwork(t *testing.T) {
	k, i := defaultGuest(t)
	var sent [][]byte
	var console bytes.Buffer
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0", Net: true, MAC: guestMAC,
		Outputs: Outputs{
			Net:     func(_ uint64, f []byte) { sent = append(sent, append([]byte(nil), f...)) },
			Console: func(_ uint64, b []byte) { console.Write(b) },
		}})
	if err != nil {
		t.Fatal(err)
	}
	// Boot until init has configured eth0.
	for !bytes.Contains(console.Bytes(), []byte("console ready")) {
		if m.Instret() > 1e9 {
			t.Fatalf("guest never got ready:\n%s", console.String())
		}
		m.Run(m.Instret() + 5e6)
	}
	waitFor := func(match func([]byte) bool) []byte {
		for n := 0; n < 200; n++ {
			for _, f := range sent {
				if match(f) {
					return f
				}
			}
			m.Run(m.Instret() + 1e6)
		}
		return nil
	}
	sent = nil
	if _, err := m.Deliver(NetReceive{Frame: arpRequest()}); err != nil {
		t.Fatal(err)
	}
	reply := waitFor(func(f []byte) bool {
		return len(f) >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && bytes.Equal(f[28:32], guestIP)
	})
	if reply == nil || !bytes.Equal(reply[22:28], guestMAC[:]) {
		t.Fatalf("no ARP reply from the guest; it sent %d frames", len(sent))
	}
	payload := []byte("ftvm in-process ping")
	m.Deliver(NetReceive{Frame: icmpEcho(payload)})
	echo := waitFor(func(f []byte) bool { return len(f) > 34 && f[23] == 1 && f[34] == 0 })
	if echo == nil || !bytes.HasSuffix(echo, payload) {
		t.Fatalf("no ICMP echo reply with our payload; the guest sent %d frames", len(sent))
	}
}
