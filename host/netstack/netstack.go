// Package netstack is a user-space TCP/IPv4 endpoint on an Ethernet link
// whose frames the caller carries: gVisor's netstack, tuned so that its
// connections to a guest outlive a failover (the guest silent for seconds,
// then back on another port or process). The virtual switch's own
// interface is one; a benchmark's in-process client on a netdev pipe is
// another.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	"gvisor.dev/gvisor/pkg/waiter"

	"ftvm/host/netdev"
)

const (
	nicID = 1
	mtu   = 1500
	// maxRTO caps the netstack's retransmission backoff. gVisor's default
	// (120 s, as Linux) would let a guest that was silent for ten seconds
	// wait up to ten seconds more for the next retransmission after it
	// came back; a 500 ms cap bounds that extra pause of a failover at
	// half a second, at the cost of two small frames a second into the
	// void per connection while the guest is gone (nothing on a virtual
	// LAN).
	maxRTO = 500 * time.Millisecond
	// maxRetries is high enough that Config.GuestTimeout, not the count
	// of retransmissions, decides when the netstack gives up on a guest:
	// gVisor aborts after this many retransmissions of one segment even
	// within the user timeout (15 by default, about 7 s at a 500 ms cap).
	maxRetries = 10000
	// Keepalive on the guest connections: an idle client connection to a
	// guest that is gone for good ends after keepaliveIdle plus
	// GuestTimeout instead of never.
	keepaliveIdle     = 30 * time.Second
	keepaliveInterval = 5 * time.Second
)

// Stack is a netstack on a channel link endpoint. Frames for it are queued
// (bounded) and injected by one goroutine; frames it sends are read by
// another and handed to the caller's transmit function.
type Stack struct {
	stack        *stack.Stack
	ep           *channel.Endpoint
	in           chan []byte
	guestTimeout time.Duration
}

// New makes a stack with address ip on a link with MAC address mac, at most
// queue frames waiting for it; a connection it dials gives up on a peer
// silent for guestTimeout.
func New(mac [6]byte, ip netip.Prefix, queue int, guestTimeout time.Duration) (*Stack, error) {
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	i := &Stack{stack: st, in: make(chan []byte, queue), guestTimeout: guestTimeout}
	fail := func(what string, err tcpip.Error) (*Stack, error) {
		st.Close()
		return nil, fmt.Errorf("netstack: %s: %v", what, err)
	}
	for what, opt := range map[string]tcpip.SettableTransportProtocolOption{
		"max RTO":     ptr(tcpip.TCPMaxRTOOption(maxRTO)),
		"max retries": ptr(tcpip.TCPMaxRetriesOption(maxRetries)),
		"SACK":        ptr(tcpip.TCPSACKEnabled(true)),
	} {
		if err := st.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fail(what, err)
		}
	}
	i.ep = channel.New(queue, mtu, tcpip.LinkAddress(mac[:]))
	if err := st.CreateNIC(nicID, ethernet.New(i.ep)); err != nil {
		return fail("create NIC", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFrom4(ip.Addr().As4()), PrefixLen: ip.Bits(),
		},
	}
	if err := st.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fail("add address", err)
	}
	st.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID}})
	return i, nil
}

func ptr[T any](v T) *T { return &v }

// Close stops the stack.
func (i *Stack) Close() {
	i.ep.Close()
	i.stack.Close()
}

// Deliver queues a frame received from the link without waiting; false
// means the queue is full and the frame is dropped.
func (i *Stack) Deliver(f []byte) bool {
	select {
	case i.in <- append([]byte(nil), f...):
		return true
	default:
		return false
	}
}

// Run feeds the queued frames to the stack and hands every frame it sends
// to transmit, until ctx is done.
func (i *Stack) Run(ctx context.Context, transmit func([]byte)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		i.outbound(ctx, transmit)
	}()
	i.inbound(ctx)
	<-done
}

// Attach carries the stack's frames over a host network backend (an
// in-process netdev pipe, say) until ctx is done.
func (i *Stack) Attach(ctx context.Context, b netdev.Backend) {
	go i.Run(ctx, b.Transmit)
	go func() {
		for {
			for {
				f, ok := b.TryReceive()
				if !ok {
					break
				}
				i.Deliver(f)
			}
			select {
			case <-b.Ready():
			case <-ctx.Done():
				return
			}
		}
	}()
}

// inbound feeds queued frames to the netstack until ctx is done.
func (i *Stack) inbound(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-i.in:
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
			// The ethernet endpoint parses the header and finds the
			// network protocol itself.
			i.ep.InjectInbound(0, pkt)
			pkt.DecRef()
		}
	}
}

// outbound hands every frame the netstack sends to forward, until ctx is
// done.
func (i *Stack) outbound(ctx context.Context, forward func([]byte)) {
	var buf []byte
	for {
		pkt := i.ep.ReadContext(ctx)
		if pkt == nil {
			return
		}
		buf = buf[:0]
		for _, s := range pkt.AsSlices() {
			buf = append(buf, s...)
		}
		pkt.DecRef()
		forward(buf)
	}
}

// Dial opens a TCP connection from the stack to a guest, set up to survive
// the guest's silence during a failover (see the constants above).
func (i *Stack) Dial(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	var wq waiter.Queue
	ep, terr := i.stack.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack endpoint: %v", terr)
	}
	so := ep.SocketOptions()
	so.SetKeepAlive(true)
	so.SetDelayOption(false) // no Nagle: requests go out as the client wrote them
	opts := []tcpip.SettableSocketOption{
		ptr(tcpip.KeepaliveIdleOption(keepaliveIdle)),
		ptr(tcpip.KeepaliveIntervalOption(keepaliveInterval)),
		// Abort only after GuestTimeout without an acknowledgement,
		// whatever the count of retransmissions or probes.
		ptr(tcpip.TCPUserTimeoutOption(i.guestTimeout)),
	}
	for _, o := range opts {
		if terr := ep.SetSockOpt(o); terr != nil {
			ep.Close()
			return nil, fmt.Errorf("netstack socket option %T: %v", o, terr)
		}
	}
	if terr := ep.SetSockOptInt(tcpip.KeepaliveCountOption, int(i.guestTimeout/keepaliveInterval)+1); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack keepalive count: %v", terr)
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(dst.Addr().As4()), Port: dst.Port()})
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, ctx.Err()
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, errors.New(terr.String())
	}
	return gonet.NewTCPConn(&wq, ep), nil
}

// Listen opens a TCP listener on port of the stack's address.
func (i *Stack) Listen(port uint16) (net.Listener, error) {
	l, err := gonet.ListenTCP(i.stack, tcpip.FullAddress{NIC: nicID, Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("netstack listen on port %d: %w", port, err)
	}
	return l, nil
}

// TCPCounters reports the stack's retransmissions and timed-out
// connections.
func (i *Stack) TCPCounters() (retransmits, timeouts uint64) {
	tcp := i.stack.Stats().TCP
	return tcp.Retransmits.Value(), tcp.EstablishedTimedout.Value()
}
