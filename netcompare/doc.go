// Package netcompare is the network half of COLO replication (Dong et al.,
// SoCC'13; QEMU's net/colo-compare.c and net/filter-rewriter.c): two
// replicas execute the same client packets, and the primary's output
// leaves only once the secondary has produced the same output, so the
// secondary could take over at any moment without the client seeing a
// difference. A difference, or output that waits too long, asks for a
// checkpoint, after which the secondary has the primary's state again.
//
// It has two parts, one per host, both pure state machines: time enters
// as an argument (a time.Duration on any monotonic clock), they start no
// goroutines and do no I/O, and neither is safe for concurrent use.
//
// # Comparator (beside the primary)
//
// Primary takes each Ethernet frame the primary's guest transmits,
// Secondary each frame the secondary's guest transmits. Frames are sorted
// into flows by their addresses seen from the guest:
//
//   - TCP, by connection (4-tuple). Each replica's output on a connection
//     is a byte stream placed by its own sequence numbers, relative to its
//     own initial sequence number (the guests chose different ones), and
//     the two streams are compared byte for byte whatever the
//     segmentation: bytes one replica sent before the other are kept until
//     the other's arrive, segments beyond a gap wait for it, and bytes
//     already compared (retransmissions) are not compared again. A FIN is
//     part of the stream (it must come at the same offset in both), a SYN
//     must carry the same options (MSS, window scale, SACK permitted,
//     timestamps present), and a RST must be matched by a RST. A primary
//     frame is released when every byte (and SYN, FIN) it carries has been
//     matched, and when the secondary has acknowledged at least what it
//     acknowledges (otherwise the client would discard bytes the secondary
//     never received, and a failover would lose them; a pure ACK is held
//     by this rule alone). The frames that carry new sequence space (or a
//     RST) leave in the order the guest sent them; pure acknowledgements
//     and retransmissions of compared bytes leave as soon as that rule
//     allows, ahead of held data if need be: the client may need a
//     retransmission that the secondary, whose output it is too, waits to
//     see acknowledged before it sends more. A retransmission of bytes not
//     yet compared is dropped (its first copy is held; TCP takes it as a
//     loss), and one that runs past the compared bytes leaves cut short to
//     them, a copy with its lengths and checksums set anew.
//   - ARP and IPv6 neighbour discovery are released at once: they
//     describe the address bindings, which are the same on both replicas,
//     and carry no connection state; holding them would only delay every
//     connection's first packet.
//   - Everything else (UDP, ICMP, IP fragments, TCP that does not parse,
//     other EtherTypes) is compared as datagrams: the n-th frame of the
//     primary in a flow against the n-th of the secondary, on the IP
//     payload (IP identification, TTL and checksum may differ) or, for
//     other EtherTypes, on everything after the Ethernet header. A service
//     whose datagrams depend on state the replicas do not share (random
//     DNS query identifiers, say) asks for a checkpoint on each, which is
//     the price of sending them safely.
//
// Released hands over the frames that may leave. Want reports whether
// the comparator asks for a checkpoint, and why (Trigger): a Mismatch
// (the flow, and for TCP the byte offset after the SYN and the primary's
// sequence number), a HoldTimeout (a primary frame waited
// Config.HoldTimeout unmatched: the secondary is slow or silent), HeldBytes
// (the held frames reached Config.MaxHeldBytes; beyond twice that, primary
// frames are dropped and TCP retransmits them), BufferFull (the
// secondary is far ahead, or too many segments wait beyond a gap), a
// TableFull flow table, or the Period (Config.MaxPeriod since the last
// checkpoint). Every bound is counted in bytes or entries, so nothing a
// guest sends can make the comparator's memory grow without limit; a
// frame that does not parse is still classified and compared.
//
// Checkpoint is called when the checkpoint is taken. It returns the
// primary frames still held (the driver releases them once the secondary
// has acknowledged the checkpoint) and makes the secondary's side of every
// connection the primary's: same sequence numbers, same position.
//
// # Rewriter (beside the secondary)
//
// The client knows the primary's sequence numbers. The Rewriter maps the
// frames going to the secondary's guest into its space (acknowledgement
// number and SACK blocks, with an incremental checksum update) and, after
// a failover, the promoted secondary's frames back into the client's. It
// learns both initial sequence numbers on its own (see Rewriter), so it
// lives on the secondary's host and survives the primary.
//
// # How a COLO driver uses it
//
// Inputs. Every frame for the guest must reach both guests. Two ways:
// the switch mirrors each frame for the guest's MAC to the secondary's port
// as well as the primary's, or the primary's host forwards a copy of each
// frame it receives over the replication link. Either way the secondary's
// host passes each one through Rewriter.ToSecondary just before delivering
// it to its guest, unmodified frames in, rewritten frames out. Frames for
// the secondary that arrive while it applies a checkpoint are kept and
// delivered after it. The path to the secondary should not lose frames
// (the replication link is TCP; a switch port needs a queue): the
// acknowledgement rule above recovers lost client data (it holds the
// primary's acknowledgement of what the secondary lacks, so the client
// resends it), but a lost pure acknowledgement can leave the secondary
// waiting for it with nothing to send while the client, having all it was
// released, sends nothing more; the hold timeout then asks for the
// checkpoint that ends the wait.
//
// Outputs. The primary's host gives each frame its guest transmits to
// Comparator.Primary instead of the network. The secondary's host gives
// each frame its guest transmits to Rewriter.Observe, then ships it to the
// primary's host, which gives it to Comparator.Secondary; the secondary's
// frames never reach the network. After each call, and from a ticker (call
// Tick at least every HoldTimeout/4), the driver sends Released's frames
// on the primary's NIC and looks at Want.
//
// Checkpoints. When Want says so (or for reasons of its own), the driver
// pauses both guests, feeds the comparator every frame the primary's guest
// sent before the pause, calls Comparator.Checkpoint, and takes the
// checkpoint; the primary may resume at once (the frames it sends from
// then on are compared against the secondary's once the secondary runs
// from the checkpoint). The secondary's host discards the frames its guest
// sent before it applied the checkpoint (tag the secondary's frames with
// the checkpoint generation they were produced in, and let the primary's
// host drop stale ones), applies it, calls Rewriter.Checkpoint and
// resumes. The frames Checkpoint returned are released when the secondary
// acknowledges the checkpoint, as in Remus. If the checkpoint fails
// because the secondary is lost, the primary continues alone: release
// those frames at once and stop feeding the comparator.
//
// Failover. The promoted secondary's host calls Rewriter.Failover and from
// then on passes every frame its guest sends through
// Rewriter.FromSecondary before the network, and every frame for it
// through Rewriter.ToSecondary: the connections opened since the last
// checkpoint keep their mapping for as long as they stay open.
package netcompare
