package netcompare

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Ethernet and IP constants (IEEE 802.3, RFC 791, RFC 8200, RFC 9293).
const (
	ethHeaderLen = 14

	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	tcpMinHeader = 20
)

// kind is what the comparator does with a frame.
type kind uint8

const (
	// kindDatagram: compared whole (its body), in order within its flow.
	kindDatagram kind = iota
	// kindTCP: compared as part of its connection's byte stream.
	kindTCP
	// kindPass: released at once (ARP, IPv6 neighbour discovery).
	kindPass
)

// flowKey names a flow from the guest's side: a TCP connection by its
// 4-tuple, other IP traffic by protocol, addresses and (UDP) ports, other
// EtherTypes by type and destination MAC. Both replicas have the same
// addresses, so their frames of one flow have the same key, and a frame
// for the guest has the key of the guest's frames of that flow.
type flowKey struct {
	etherType     uint16
	proto         uint8
	local, remote [16]byte // IPv4 in the first 4 bytes; a MAC in remote[:6]
	lport, rport  uint16
}

// packet is a parsed frame. Slices point into the frame.
type packet struct {
	frame []byte
	kind  kind
	key   flowKey
	// body is what a datagram comparison compares: the IP payload, or
	// everything after the Ethernet header for other EtherTypes.
	body []byte
	tcp  tcpHeader
}

// tcpHeader locates a TCP segment in its frame.
type tcpHeader struct {
	off      int // offset of the TCP header in the frame
	hdrLen   int // header length with options
	seq, ack uint32
	flags    uint8
	payload  []byte
}

// parse classifies frame f. outbound means a guest sent it (the guest is
// the source); otherwise it is on its way to a guest. Whatever f holds,
// parse returns a usable classification: a frame that is not well-formed
// TCP is a datagram of some flow, so that a guest's malformed output is
// still compared rather than released.
func parse(f []byte, outbound bool, p *packet) {
	*p = packet{frame: f}
	if len(f) < ethHeaderLen {
		p.body = f // a runt: its own flow, compared whole
		return
	}
	et := binary.BigEndian.Uint16(f[12:14])
	p.key.etherType = et
	switch et {
	case etherTypeIPv4:
		parseIPv4(f, outbound, p)
	case etherTypeIPv6:
		parseIPv6(f, outbound, p)
	case etherTypeARP:
		p.kind = kindPass
	default:
		copy(p.key.remote[:6], f[0:6])
		p.body = f[ethHeaderLen:]
	}
}

func parseIPv4(f []byte, outbound bool, p *packet) {
	ip := f[ethHeaderLen:]
	p.body = ip
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return
	}
	// The total length, not the frame, bounds the packet: Ethernet pads
	// short frames to 60 bytes.
	ip = ip[:total]
	proto := ip[9]
	p.key.proto = proto
	setAddrs(&p.key, ip[12:16], ip[16:20], outbound)
	p.body = ip[ihl:]
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		// A fragment (MF set or a non-zero offset): compared as an opaque
		// datagram. A TCP stack that sets DF never sends one.
		return
	}
	transport(ethHeaderLen+ihl, ip[ihl:], proto, outbound, p)
}

func parseIPv6(f []byte, outbound bool, p *packet) {
	ip := f[ethHeaderLen:]
	p.body = ip
	if len(ip) < 40 || ip[0]>>4 != 6 {
		return
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if 40+plen > len(ip) {
		return
	}
	ip = ip[:40+plen]
	nh := ip[6]
	p.key.proto = nh
	setAddrs(&p.key, ip[8:24], ip[24:40], outbound)
	p.body = ip[40:]
	if nh == protoICMPv6 && len(ip) > 40 && ip[40] >= 133 && ip[40] <= 137 {
		// Neighbour discovery (RFC 4861): router and neighbour
		// solicitations and advertisements, redirects.
		p.kind = kindPass
		return
	}
	// TCP after extension headers is compared as datagrams; Linux puts
	// none on TCP.
	transport(ethHeaderLen+40, ip[40:], nh, outbound, p)
}

func setAddrs(k *flowKey, src, dst []byte, outbound bool) {
	if outbound {
		copy(k.local[:], src)
		copy(k.remote[:], dst)
	} else {
		copy(k.local[:], dst)
		copy(k.remote[:], src)
	}
}

// transport parses what follows the IP header: t starts at offset off of
// the frame.
func transport(off int, t []byte, proto uint8, outbound bool, p *packet) {
	switch proto {
	case protoUDP:
		if len(t) >= 8 {
			setPorts(&p.key, t, outbound)
		}
	case protoTCP:
		if len(t) < tcpMinHeader {
			return
		}
		hl := int(t[12]>>4) * 4
		if hl < tcpMinHeader || hl > len(t) {
			return
		}
		setPorts(&p.key, t, outbound)
		p.kind = kindTCP
		p.tcp = tcpHeader{
			off:     off,
			hdrLen:  hl,
			seq:     binary.BigEndian.Uint32(t[4:8]),
			ack:     binary.BigEndian.Uint32(t[8:12]),
			flags:   t[13],
			payload: t[hl:],
		}
	}
}

func setPorts(k *flowKey, t []byte, outbound bool) {
	sp := binary.BigEndian.Uint16(t[0:2])
	dp := binary.BigEndian.Uint16(t[2:4])
	if outbound {
		k.lport, k.rport = sp, dp
	} else {
		k.lport, k.rport = dp, sp
	}
}

// Flow names a flow in reports, from the guest's side.
type Flow struct {
	EtherType uint16
	Proto     uint8          // the IP protocol (6 TCP, 17 UDP...), 0 for non-IP
	Guest     netip.AddrPort // the guest's address and port (IP only)
	Peer      netip.AddrPort // the other end (IP only)
}

func (k flowKey) flow() Flow {
	fl := Flow{EtherType: k.etherType, Proto: k.proto}
	var g, r netip.Addr
	switch k.etherType {
	case etherTypeIPv4:
		g = netip.AddrFrom4([4]byte(k.local[:4]))
		r = netip.AddrFrom4([4]byte(k.remote[:4]))
	case etherTypeIPv6:
		g = netip.AddrFrom16(k.local)
		r = netip.AddrFrom16(k.remote)
	default:
		return fl
	}
	fl.Guest = netip.AddrPortFrom(g, k.lport)
	fl.Peer = netip.AddrPortFrom(r, k.rport)
	return fl
}

func (fl Flow) String() string {
	switch {
	case fl.Guest.IsValid() && fl.Proto == protoTCP:
		return fmt.Sprintf("tcp %v-%v", fl.Guest, fl.Peer)
	case fl.Guest.IsValid() && fl.Proto == protoUDP:
		return fmt.Sprintf("udp %v-%v", fl.Guest, fl.Peer)
	case fl.Guest.IsValid():
		return fmt.Sprintf("ip proto %d %v-%v", fl.Proto, fl.Guest.Addr(), fl.Peer.Addr())
	default:
		return fmt.Sprintf("ethertype %#04x", fl.EtherType)
	}
}

// synOptions summarises the options of a SYN that shape the connection:
// both replicas must have offered the same, or the secondary's connection
// would not be the one the client agreed to with the primary. Timestamp
// values are not compared (each replica's clock gives its own).
type synOptions struct {
	mss        uint16
	wscale     int16 // -1: none
	sackOK, ts bool
}

// tcpOptions walks the options of a TCP header, calling fn with each
// option's kind, its offset in hdr and its bytes (kind and length
// included). It stops at the end-of-list option or at the first malformed
// option.
func tcpOptions(hdr []byte, fn func(kind byte, off int, opt []byte)) {
	off := tcpMinHeader
	for off < len(hdr) {
		k := hdr[off]
		switch k {
		case 0:
			return
		case 1:
			off++
			continue
		}
		if off+2 > len(hdr) {
			return
		}
		n := int(hdr[off+1])
		if n < 2 || off+n > len(hdr) {
			return
		}
		fn(k, off, hdr[off:off+n])
		off += n
	}
}

func parseSYNOptions(hdr []byte) synOptions {
	o := synOptions{wscale: -1}
	tcpOptions(hdr, func(k byte, _ int, opt []byte) {
		switch {
		case k == 2 && len(opt) == 4:
			o.mss = binary.BigEndian.Uint16(opt[2:4])
		case k == 3 && len(opt) == 3:
			o.wscale = int16(opt[2])
		case k == 4 && len(opt) == 2:
			o.sackOK = true
		case k == 8 && len(opt) == 10:
			o.ts = true
		}
	})
	return o
}

// inetChecksum returns the Internet checksum (RFC 1071) of b, folded into
// initial (a partial sum).
func inetChecksum(b []byte, initial uint32) uint16 {
	s := initial
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// pseudoSum is the partial sum of the TCP pseudo-header (RFC 9293 3.1,
// RFC 8200 8.1) of a TCP segment of length n in frame f.
func pseudoSum(f []byte, n int) uint32 {
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	ip := f[ethHeaderLen:]
	if ip[0]>>4 == 4 {
		add(ip[12:20])
	} else {
		add(ip[8:40])
	}
	return s + protoTCP + uint32(n)
}

// tcpValid verifies the IP header checksum (IPv4) and the TCP
// checksum of a frame parse found to be TCP.
func tcpValid(f []byte, p *packet) bool {
	if f[ethHeaderLen]>>4 == 4 {
		ihl := int(f[ethHeaderLen]&0x0f) * 4
		if inetChecksum(f[ethHeaderLen:ethHeaderLen+ihl], 0) != 0 {
			return false
		}
	}
	seg := f[p.tcp.off : p.tcp.off+p.tcp.hdrLen+len(p.tcp.payload)]
	return inetChecksum(seg, pseudoSum(f, len(seg))) == 0
}

// trimTCP returns a copy of a TCP frame (well-formed, checksums valid)
// that carries only the first keep bytes of its payload, without FIN,
// with its IP length and checksums set anew.
func trimTCP(f []byte, p *packet, keep int) []byte {
	t := p.tcp
	n := t.off + t.hdrLen + keep
	c := make([]byte, n)
	copy(c, f[:n])
	ip := c[ethHeaderLen:]
	if ip[0]>>4 == 4 {
		ihl := int(ip[0]&0x0f) * 4
		binary.BigEndian.PutUint16(ip[2:4], uint16(n-ethHeaderLen))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], inetChecksum(ip[:ihl], 0))
	} else {
		binary.BigEndian.PutUint16(ip[4:6], uint16(n-ethHeaderLen-40))
	}
	seg := c[t.off:]
	seg[13] &^= tcpFIN
	seg[16], seg[17] = 0, 0
	binary.BigEndian.PutUint16(seg[16:18], inetChecksum(seg, pseudoSum(c, len(seg))))
	return c
}
