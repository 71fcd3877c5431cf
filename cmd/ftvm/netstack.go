package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"ftvm/host/netdev"
)

// hostStack is a TCP/IP stack (gVisor's netstack) on the host end of an
// in-process link to the guest's NIC, so a benchmark can drive the guest's
// servers with ordinary net.Conns: no TAP device, no root, and no traffic
// anywhere but inside this process.
type hostStack struct {
	s      *stack.Stack
	ep     *channel.Endpoint
	cancel context.CancelFunc
}

const hostNIC = 1

// newHostStack starts a stack with address ip (a /24) on link.
func newHostStack(link *netdev.PipeEnd, mac net.HardwareAddr, ip [4]byte) (*hostStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	// The channel endpoint carries whole Ethernet frames (the MTU counts
	// the 14-byte header), which the ethernet wrapper adds and parses.
	ep := channel.New(1024, 1514, tcpip.LinkAddress(mac))
	if err := s.CreateNIC(hostNIC, ethernet.New(ep)); err != nil {
		return nil, fmt.Errorf("netstack: %v", err)
	}
	addr := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(ip), PrefixLen: 24}}
	if err := s.AddProtocolAddress(hostNIC, addr, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("netstack: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: hostNIC}})
	ctx, cancel := context.WithCancel(context.Background())
	h := &hostStack{s: s, ep: ep, cancel: cancel}
	go func() { // stack -> guest
		for {
			pkt := ep.ReadContext(ctx)
			if pkt == nil {
				return
			}
			link.Transmit(pkt.ToView().AsSlice())
			pkt.DecRef()
		}
	}()
	go func() { // guest -> stack
		for {
			for {
				f, ok := link.TryReceive()
				if !ok {
					break
				}
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
				ep.InjectInbound(0, pkt) // the ethernet wrapper reads the type
				pkt.DecRef()
			}
			select {
			case <-link.Ready():
			case <-ctx.Done():
				return
			}
		}
	}()
	return h, nil
}

// dial opens a TCP connection to ip:port through the stack.
func (h *hostStack) dial(ip [4]byte, port uint16, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gonet.DialContextTCP(ctx, h.s, tcpip.FullAddress{NIC: hostNIC, Addr: tcpip.AddrFrom4(ip), Port: port}, ipv4.ProtocolNumber)
}

func (h *hostStack) close() {
	h.cancel()
	h.s.Close()
}
