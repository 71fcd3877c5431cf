package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// setupNetwork brings up lo and eth0 with the address from ftvm.ip= (and a
// default route via ftvm.gw= if given). The initramfs has no ip(8), so this
// speaks rtnetlink directly.
func setupNetwork(params map[string]string) error {
	nl, err := dialNetlink()
	if err != nil {
		return err
	}
	defer unix.Close(nl.fd)

	// Bringing lo up makes the kernel add 127.0.0.1/8 by itself.
	if err := nl.linkUp("lo"); err != nil {
		return err
	}
	cidr := params["ftvm.ip"]
	if cidr == "" {
		cidr = defaultIP
	}
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil || !prefix.Addr().Is4() {
		return fmt.Errorf("ftvm.ip=%q: want an IPv4 address/prefix", cidr)
	}
	if _, err := net.InterfaceByName("eth0"); err != nil {
		return fmt.Errorf("no eth0 (no virtio-net device?): %v", err)
	}
	if err := nl.addAddr("eth0", prefix); err != nil {
		return fmt.Errorf("eth0 address %s: %v", prefix, err)
	}
	if err := nl.linkUp("eth0"); err != nil {
		return err
	}
	msg := "eth0 up, " + prefix.String()
	if gw := params["ftvm.gw"]; gw != "" {
		addr, err := netip.ParseAddr(gw)
		if err != nil || !addr.Is4() {
			return fmt.Errorf("ftvm.gw=%q: want an IPv4 address", gw)
		}
		if err := nl.addDefaultRoute("eth0", addr); err != nil {
			return fmt.Errorf("default route via %s: %v", addr, err)
		}
		msg += ", default via " + addr.String()
	}
	logf("network: lo up, %s", msg)
	return nil
}

type netlink struct {
	fd  int
	seq uint32
}

func dialNetlink() (*netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %v", err)
	}
	return &netlink{fd: fd}, nil
}

// Netlink messages are in host byte order.
var ne = binary.NativeEndian

func index(name string) (uint32, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}

func (nl *netlink) linkUp(name string) error {
	idx, err := index(name)
	if err != nil {
		return err
	}
	// struct ifinfomsg: family, pad, type, index, flags, change.
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	ne.PutUint32(b[4:], idx)
	ne.PutUint32(b[8:], unix.IFF_UP)
	ne.PutUint32(b[12:], unix.IFF_UP)
	if err := nl.do(unix.RTM_NEWLINK, 0, b); err != nil {
		return fmt.Errorf("%s up: %v", name, err)
	}
	return nil
}

func (nl *netlink) addAddr(name string, p netip.Prefix) error {
	idx, err := index(name)
	if err != nil {
		return err
	}
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = unix.AF_INET
	b[1] = byte(p.Bits())
	b[3] = unix.RT_SCOPE_UNIVERSE
	ne.PutUint32(b[4:], idx)
	ip := p.Addr().As4()
	b = attr(b, unix.IFA_LOCAL, ip[:])
	b = attr(b, unix.IFA_ADDRESS, ip[:])
	return nl.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
}

func (nl *netlink) addDefaultRoute(name string, gw netip.Addr) error {
	idx, err := index(name)
	if err != nil {
		return err
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = unix.AF_INET
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	g := gw.As4()
	b = attr(b, unix.RTA_GATEWAY, g[:])
	b = attr(b, unix.RTA_OIF, ne.AppendUint32(nil, idx))
	return nl.do(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
}

// attr appends a struct rtattr (len, type) and its 4-byte-aligned payload.
func attr(b []byte, typ uint16, data []byte) []byte {
	b = ne.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// do sends one request with NLM_F_ACK and waits for the kernel's answer.
func (nl *netlink) do(typ, flags uint16, body []byte) error {
	nl.seq++
	// struct nlmsghdr: len, type, flags, seq, pid.
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	ne.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(msg[8:], nl.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(nl.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(nl.fd, buf, 0)
		if err != nil {
			return err
		}
		for p := buf[:n]; len(p) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(p[0:]))
			if l < unix.SizeofNlMsghdr || l > len(p) {
				return fmt.Errorf("netlink: malformed reply")
			}
			if ne.Uint32(p[8:]) == nl.seq && ne.Uint16(p[4:]) == unix.NLMSG_ERROR {
				// struct nlmsgerr starts with the (negative) errno; 0 is the ack.
				if l < unix.SizeofNlMsghdr+4 {
					return fmt.Errorf("netlink: short error message")
				}
				if e := int32(ne.Uint32(p[unix.SizeofNlMsghdr:])); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
			p = p[min((l+3)&^3, len(p)):]
		}
	}
}
