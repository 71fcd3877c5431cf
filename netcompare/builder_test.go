package netcompare

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The frames of these tests are built with gVisor's header package, an
// encoder and checksum implementation independent of the code under test.

var (
	guestMAC  = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	clientMAC = [6]byte{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	guestIP   = netip.MustParseAddr("10.0.2.15")
	clientIP  = netip.MustParseAddr("10.0.2.2")
	guestIP6  = netip.MustParseAddr("fd00::15")
	clientIP6 = netip.MustParseAddr("fd00::2")
)

// ep is one end of a TCP connection or UDP flow.
type ep struct {
	mac  [6]byte
	ip   netip.Addr
	port uint16
}

func guestEP(port uint16) ep  { return ep{guestMAC, guestIP, port} }
func clientEP(port uint16) ep { return ep{clientMAC, clientIP, port} }

// seg describes a TCP segment.
type seg struct {
	src, dst ep
	seq, ack uint32
	flags    header.TCPFlags
	win      uint16
	opts     []byte // TCP options, padded here to a multiple of 4
	payload  []byte
	ipID     uint16
	ipOpts   []byte // IPv4 options (a multiple of 4 bytes)
	pad      int    // Ethernet padding bytes after the packet
}

func addr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// ipFrame wraps a transport segment in IPv4 or IPv6 and Ethernet, with
// pad bytes of Ethernet padding after the packet.
func ipFrame(src, dst ep, proto tcpip.TransportProtocolNumber, l4 []byte, ipID uint16, pad int) []byte {
	if src.ip.Is4() {
		f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(l4)+pad)
		header.Ethernet(f).Encode(&header.EthernetFields{
			SrcAddr: tcpip.LinkAddress(src.mac[:]), DstAddr: tcpip.LinkAddress(dst.mac[:]), Type: header.IPv4ProtocolNumber,
		})
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + len(l4)), ID: ipID, Flags: header.IPv4FlagDontFragment, TTL: 64,
			Protocol: uint8(proto), SrcAddr: addr(src.ip), DstAddr: addr(dst.ip),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(f[header.EthernetMinimumSize+header.IPv4MinimumSize:], l4)
		return f
	}
	f := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(l4)+pad)
	header.Ethernet(f).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(src.mac[:]), DstAddr: tcpip.LinkAddress(dst.mac[:]), Type: header.IPv6ProtocolNumber,
	})
	header.IPv6(f[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(l4)), TransportProtocol: proto, HopLimit: 64,
		SrcAddr: addr(src.ip), DstAddr: addr(dst.ip),
	})
	copy(f[header.EthernetMinimumSize+header.IPv6MinimumSize:], l4)
	return f
}

// tcpFrame builds a TCP segment with a correct checksum.
func tcpFrame(s seg) []byte {
	opts := s.opts
	for len(opts)%4 != 0 {
		opts = append(opts[:len(opts):len(opts)], 1) // NOP
	}
	hl := header.TCPMinimumSize + len(opts)
	l4 := make([]byte, hl+len(s.payload))
	t := header.TCP(l4)
	win := s.win
	if win == 0 {
		win = 65535
	}
	t.Encode(&header.TCPFields{
		SrcPort: s.src.port, DstPort: s.dst.port, SeqNum: s.seq, AckNum: s.ack,
		DataOffset: uint8(hl), Flags: s.flags, WindowSize: win,
	})
	copy(l4[header.TCPMinimumSize:], opts)
	copy(l4[hl:], s.payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr(s.src.ip), addr(s.dst.ip), uint16(len(l4)))
	xsum = checksum.Checksum(s.payload, xsum)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	if len(s.ipOpts) > 0 {
		return withIPv4Options(s, l4)
	}
	return ipFrame(s.src, s.dst, header.TCPProtocolNumber, l4, s.ipID, s.pad)
}

// withIPv4Options builds the IPv4 frame by hand, for raw options.
func withIPv4Options(s seg, l4 []byte) []byte {
	ihl := header.IPv4MinimumSize + len(s.ipOpts)
	f := make([]byte, header.EthernetMinimumSize+ihl+len(l4)+s.pad)
	header.Ethernet(f).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(s.src.mac[:]), DstAddr: tcpip.LinkAddress(s.dst.mac[:]), Type: header.IPv4ProtocolNumber,
	})
	ip := f[header.EthernetMinimumSize:]
	ip[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], s.ipID)
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = uint8(header.TCPProtocolNumber)
	copy(ip[12:16], s.src.ip.AsSlice())
	copy(ip[16:20], s.dst.ip.AsSlice())
	copy(ip[20:], s.ipOpts)
	h := header.IPv4(ip)
	h.SetChecksum(^h.CalculateChecksum())
	copy(ip[ihl:], l4)
	return f
}

// udpFrame builds a UDP datagram with a correct checksum.
func udpFrame(src, dst ep, payload []byte, ipID uint16) []byte {
	l4 := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(l4)
	u.Encode(&header.UDPFields{SrcPort: src.port, DstPort: dst.port, Length: uint16(len(l4))})
	copy(l4[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, addr(src.ip), addr(dst.ip), uint16(len(l4)))
	xsum = checksum.Checksum(payload, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	return ipFrame(src, dst, header.UDPProtocolNumber, l4, ipID, 0)
}

// icmpEcho builds an ICMPv4 echo reply.
func icmpEcho(src, dst ep, id, seq uint16, data []byte) []byte {
	l4 := make([]byte, header.ICMPv4MinimumSize+len(data))
	m := header.ICMPv4(l4)
	m.SetType(header.ICMPv4EchoReply)
	m.SetIdent(id)
	m.SetSequence(seq)
	copy(l4[header.ICMPv4MinimumSize:], data)
	m.SetChecksum(^checksum.Checksum(l4, 0))
	return ipFrame(src, dst, header.ICMPv4ProtocolNumber, l4, 0, 0)
}

// neighbourAdvert builds an ICMPv6 neighbour advertisement.
func neighbourAdvert(src, dst ep) []byte {
	l4 := make([]byte, header.ICMPv6NeighborAdvertMinimumSize)
	m := header.ICMPv6(l4)
	m.SetType(header.ICMPv6NeighborAdvert)
	m.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: m, Src: addr(src.ip), Dst: addr(dst.ip)}))
	return ipFrame(src, dst, header.ICMPv6ProtocolNumber, l4, 0, 0)
}

// arpReply builds an ARP reply from the guest.
func arpReply() []byte {
	f := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(f).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(guestMAC[:]), DstAddr: tcpip.LinkAddress(clientMAC[:]), Type: header.ARPProtocolNumber,
	})
	a := header.ARP(f[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPReply)
	copy(a.HardwareAddressSender(), guestMAC[:])
	copy(a.ProtocolAddressSender(), guestIP.AsSlice())
	copy(a.HardwareAddressTarget(), clientMAC[:])
	copy(a.ProtocolAddressTarget(), clientIP.AsSlice())
	return f
}

// tcpChecksumOK verifies a frame's TCP checksum from scratch, with
// gVisor's implementation.
func tcpChecksumOK(t *testing.T, f []byte) bool {
	t.Helper()
	if header.Ethernet(f).Type() != header.IPv4ProtocolNumber && header.Ethernet(f).Type() != header.IPv6ProtocolNumber {
		t.Fatalf("not an IP frame")
	}
	return tcpChecksumValid(f)
}

// tcpChecksumValid verifies the TCP checksum of an IP frame whose headers
// are well-formed.
func tcpChecksumValid(f []byte) bool {
	var src, dst tcpip.Address
	var tcp header.TCP
	switch header.Ethernet(f).Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		ip = ip[:ip.TotalLength()]
		src, dst, tcp = ip.SourceAddress(), ip.DestinationAddress(), header.TCP(ip.Payload())
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(f[header.EthernetMinimumSize:])
		src, dst, tcp = ip.SourceAddress(), ip.DestinationAddress(), header.TCP(ip.Payload())
	default:
		return false
	}
	return tcp.IsChecksumValid(src, dst, checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload())))
}

// tcpOf returns the TCP header of a frame built here.
func tcpOf(f []byte) header.TCP {
	if header.Ethernet(f).Type() == header.IPv4ProtocolNumber {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		return header.TCP(ip[ip.HeaderLength():ip.TotalLength()])
	}
	return header.TCP(header.IPv6(f[header.EthernetMinimumSize:]).Payload())
}

// synOpts are the options of a Linux SYN: MSS, SACK permitted,
// timestamps, window scale.
func synOpts(tsval uint32) []byte {
	b := make([]byte, 20)
	n := header.EncodeMSSOption(1460, b)
	n += header.EncodeSACKPermittedOption(b[n:])
	n += header.EncodeTSOption(tsval, 0, b[n:])
	n += header.EncodeNOP(b[n:])
	n += header.EncodeWSOption(7, b[n:])
	return b[:n]
}

// tsOpt is the timestamp option of an established connection's segment.
func tsOpt(tsval, tsecr uint32) []byte {
	b := make([]byte, 12)
	n := header.EncodeNOP(b)
	n += header.EncodeNOP(b[n:])
	n += header.EncodeTSOption(tsval, tsecr, b[n:])
	return b[:n]
}

// sackOpt is a SACK option with the given blocks.
func sackOpt(blocks ...header.SACKBlock) []byte {
	b := make([]byte, 40)
	n := header.EncodeNOP(b)
	n += header.EncodeNOP(b[n:])
	n += header.EncodeSACKBlocks(blocks, b[n:])
	return b[:n]
}
