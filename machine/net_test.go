package machine

import (
	"bytes"
	"testing"

	"ftvm/internal/testsupport"
)

var (
	hostNIC  = testsupport.Station{MAC: [6]byte{0x02, 0, 0, 0, 0, 2}, IP: [4]byte{10, 0, 2, 2}}
	guestNIC = testsupport.Station{MAC: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}, IP: [4]byte{10, 0, 2, 15}}
)

// TestGuestNetwork drives the real guest's network stack in-process through
// the virtio-net device: an ARP request must get a reply, and an ICMP echo
// request an echo reply carrying the same payload.
func TestGuestNetwork(t *testing.T) {
	k, i := testsupport.DefaultGuest(t)
	var sent [][]byte
	var console bytes.Buffer
	m, err := New(Config{Kernel: k, Initrd: i, Cmdline: "console=ttyS0", Net: true, MAC: guestNIC.MAC,
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
	if _, err := m.Deliver(NetReceive{Frame: testsupport.ARPRequest(hostNIC, guestNIC.IP)}); err != nil {
		t.Fatal(err)
	}
	reply := waitFor(func(f []byte) bool {
		return len(f) >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && bytes.Equal(f[28:32], guestNIC.IP[:])
	})
	if reply == nil || !bytes.Equal(reply[22:28], guestNIC.MAC[:]) {
		t.Fatalf("no ARP reply from the guest; it sent %d frames", len(sent))
	}
	payload := []byte("ftvm in-process ping")
	m.Deliver(NetReceive{Frame: testsupport.ICMPEcho(hostNIC, guestNIC, 0x1234, 1, payload)})
	echo := waitFor(func(f []byte) bool { return len(f) > 34 && f[23] == 1 && f[34] == 0 })
	if echo == nil || !bytes.HasSuffix(echo, payload) {
		t.Fatalf("no ICMP echo reply with our payload; the guest sent %d frames", len(sent))
	}
}
