package testsupport

import "encoding/binary"

// Station is one end of an Ethernet and IPv4 conversation.
type Station struct {
	MAC [6]byte
	IP  [4]byte
}

// Broadcast is the Ethernet broadcast address.
var Broadcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// EtherType values.
const (
	EtherIPv4 = 0x0800
	EtherARP  = 0x0806
)

// IP protocol numbers.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
)

// TCP flags.
const (
	TCPFIN = 0x01
	TCPSYN = 0x02
	TCPRST = 0x04
	TCPPSH = 0x08
	TCPACK = 0x10
)

// minFrame is the smallest Ethernet frame without its FCS.
const minFrame = 60

// Checksum is the Internet checksum of b (RFC 1071): the one's complement
// of the one's complement sum of its 16-bit words.
func Checksum(b []byte) uint16 {
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

// Ethernet returns a frame from src to dst carrying payload, padded with
// zeros to the Ethernet minimum.
func Ethernet(dst, src [6]byte, etherType uint16, payload []byte) []byte {
	f := make([]byte, 0, max(14+len(payload), minFrame))
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	f = append(f, payload...)
	for len(f) < minFrame {
		f = append(f, 0)
	}
	return f
}

// arp is an Ethernet/IPv4 ARP message (RFC 826).
func arp(op uint16, sender Station, targetMAC [6]byte, targetIP [4]byte) []byte {
	a := []byte{0, 1, 0x08, 0, 6, 4}
	a = binary.BigEndian.AppendUint16(a, op)
	a = append(a, sender.MAC[:]...)
	a = append(a, sender.IP[:]...)
	a = append(a, targetMAC[:]...)
	return append(a, targetIP[:]...)
}

// ARPRequest asks, from from, who has the address ip (broadcast).
func ARPRequest(from Station, ip [4]byte) []byte {
	return Ethernet(Broadcast, from.MAC, EtherARP, arp(1, from, [6]byte{}, ip))
}

// ARPReply tells to that from's IP address is at from's MAC.
func ARPReply(from, to Station) []byte {
	return Ethernet(to.MAC, from.MAC, EtherARP, arp(2, from, to.MAC, to.IP))
}

// IPv4 returns an Ethernet frame from from to to with an IPv4 header
// (don't fragment, TTL 64, checksummed) before payload.
func IPv4(from, to Station, proto byte, payload []byte) []byte {
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0}
	ip = append(ip, from.IP[:]...)
	ip = append(ip, to.IP[:]...)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(payload)))
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip))
	return Ethernet(to.MAC, from.MAC, EtherIPv4, append(ip, payload...))
}

// ICMPEcho is an ICMP echo request from from to to.
func ICMPEcho(from, to Station, id, seq uint16, payload []byte) []byte {
	icmp := []byte{8, 0, 0, 0}
	icmp = binary.BigEndian.AppendUint16(icmp, id)
	icmp = binary.BigEndian.AppendUint16(icmp, seq)
	icmp = append(icmp, payload...)
	binary.BigEndian.PutUint16(icmp[2:], Checksum(icmp))
	return IPv4(from, to, ProtoICMP, icmp)
}

// TCPSegment is what a TCP header says, and the data after it.
type TCPSegment struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            byte
	Window           uint16
	Options          []byte // a multiple of 4 bytes
	Data             []byte
}

// TCP returns an Ethernet frame from from to to carrying s, its checksum
// computed over the IPv4 pseudo-header (RFC 793).
func TCP(from, to Station, s TCPSegment) []byte {
	hl := 20 + len(s.Options)
	tcp := make([]byte, hl, hl+len(s.Data))
	binary.BigEndian.PutUint16(tcp[0:], s.SrcPort)
	binary.BigEndian.PutUint16(tcp[2:], s.DstPort)
	binary.BigEndian.PutUint32(tcp[4:], s.Seq)
	binary.BigEndian.PutUint32(tcp[8:], s.Ack)
	tcp[12] = byte(hl/4) << 4
	tcp[13] = s.Flags
	binary.BigEndian.PutUint16(tcp[14:], s.Window)
	copy(tcp[20:], s.Options)
	tcp = append(tcp, s.Data...)
	pseudo := append(append([]byte(nil), from.IP[:]...), to.IP[:]...)
	pseudo = append(pseudo, 0, ProtoTCP, byte(len(tcp)>>8), byte(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], Checksum(append(pseudo, tcp...)))
	return IPv4(from, to, ProtoTCP, tcp)
}
