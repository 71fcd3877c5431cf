package migrate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"ftvm/internal/testsupport"
)

// kvClient is a minimal TCP client, in frames, for driving the default
// guest's key-value server from a test without a host network: ARP
// replies, one TCP connection (go-back-N retransmission on an
// instruction-count timer), RESP SET commands pipelined a few at a time.
// It is deterministic: what it sends is a function of the frames it was
// given and of the instruction counts it was polled at, so two identical
// machines driven by two copies of it stay identical.
type kvClient struct {
	mac, guestMAC [6]byte
	ip, guestIP   [4]byte
	port          uint16

	state          int // 0 closed, 1 SYN sent, 2 established
	iss            uint32
	sndUna, sndNxt uint32
	sndWnd         uint32
	rcvNxt         uint32
	unacked        []byte // sent or not, from sndUna on
	lastProgress   uint64 // instruction count of the last ack that moved sndUna
	replies        []byte // what the server sent
	sets, oks      int    // commands queued and acknowledged with +OK
	errs           int    // commands answered with anything else
	inflight       int
	valueSize      int
	limit          int // stop after this many SETs (0: no limit)
	pendingFrames  [][]byte
	rst            bool
}

const (
	kvPort                                 = 6379
	tcpMSS                                 = 1460
	rtoInsns                               = 30e6 // retransmission timeout, in guest instructions
	tcpSYN, tcpACK, tcpPSH, tcpRST, tcpFIN = testsupport.TCPSYN, testsupport.TCPACK, testsupport.TCPPSH, testsupport.TCPRST, testsupport.TCPFIN
)

func newKVClient(guestMAC [6]byte, valueSize int) *kvClient {
	return &kvClient{
		mac: [6]byte{0x02, 0, 0, 0, 0, 2}, guestMAC: guestMAC,
		ip: [4]byte{10, 0, 2, 2}, guestIP: [4]byte{10, 0, 2, 15},
		port: 40000, iss: 1000, valueSize: valueSize,
	}
}

// clone returns an independent copy.
func (c *kvClient) clone() *kvClient {
	d := *c
	d.unacked = append([]byte(nil), c.unacked...)
	d.replies = append([]byte(nil), c.replies...)
	d.pendingFrames = nil
	for _, f := range c.pendingFrames {
		d.pendingFrames = append(d.pendingFrames, append([]byte(nil), f...))
	}
	return &d
}

// connect starts the connection at instruction count now.
func (c *kvClient) connect(now uint64) {
	c.state, c.sndUna, c.sndNxt, c.lastProgress = 1, c.iss, c.iss+1, now
	c.send(tcpSYN, c.iss, nil, true)
}

// setCommand is the RESP encoding of SET key value for command n.
func (c *kvClient) setCommand(n int) []byte {
	key := "key" + strconv.Itoa(n)
	val := bytes.Repeat([]byte{byte('a' + n%26)}, c.valueSize)
	copy(val, strconv.Itoa(n))
	return fmt.Appendf(nil, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(val), val)
}

// input takes a frame the guest transmitted.
func (c *kvClient) input(f []byte, now uint64) {
	if len(f) < 14 || !bytes.Equal(f[0:6], c.mac[:]) && !bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		return
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0806:
		a := f[14:]
		if len(a) >= 28 && binary.BigEndian.Uint16(a[6:]) == 1 && bytes.Equal(a[24:28], c.ip[:]) {
			// The requester's MAC and IP are in the request.
			to := testsupport.Station{MAC: [6]byte(a[8:14]), IP: [4]byte(a[14:18])}
			c.pendingFrames = append(c.pendingFrames, testsupport.ARPReply(c.station(), to))
		}
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[9] != 6 || !bytes.Equal(ip[16:20], c.ip[:]) {
			return
		}
		ihl := int(ip[0]&15) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if total > len(ip) || ihl < 20 || total < ihl+20 {
			return
		}
		c.segment(ip[ihl:total], now)
	}
}

func (c *kvClient) segment(t []byte, now uint64) {
	if binary.BigEndian.Uint16(t[2:]) != c.port || binary.BigEndian.Uint16(t[0:]) != kvPort {
		return
	}
	seq, ack := binary.BigEndian.Uint32(t[4:]), binary.BigEndian.Uint32(t[8:])
	off := int(t[12]>>4) * 4
	flags := t[13]
	if off < 20 || off > len(t) {
		return
	}
	payload := t[off:]
	if flags&tcpRST != 0 {
		c.rst = true
		return
	}
	if c.state == 1 {
		if flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK && ack == c.iss+1 {
			c.state, c.rcvNxt, c.sndUna = 2, seq+1, ack
			c.sndWnd = uint32(binary.BigEndian.Uint16(t[14:]))
			c.lastProgress = now
			c.send(tcpACK, c.sndNxt, nil, false)
		}
		return
	}
	if flags&tcpACK != 0 && int32(ack-c.sndUna) > 0 && int32(ack-c.sndNxt) <= 0 {
		c.unacked = c.unacked[ack-c.sndUna:]
		c.sndUna, c.lastProgress = ack, now
	}
	c.sndWnd = uint32(binary.BigEndian.Uint16(t[14:]))
	if len(payload) > 0 || flags&tcpFIN != 0 {
		if seq == c.rcvNxt {
			c.replies = append(c.replies, payload...)
			c.rcvNxt += uint32(len(payload))
			if flags&tcpFIN != 0 {
				c.rcvNxt++
			}
		}
		c.send(tcpACK, c.sndNxt, nil, false)
	}
	for {
		line, rest, ok := bytes.Cut(c.replies, []byte("\r\n"))
		if !ok {
			break
		}
		if string(line) == "+OK" {
			c.oks++
		} else {
			c.errs++
		}
		c.replies = rest
		c.inflight--
	}
}

// poll returns the frames to deliver now: queued replies, new commands,
// data the window allows, retransmissions.
func (c *kvClient) poll(now uint64) [][]byte {
	if c.state == 2 {
		for c.inflight < 4 && (c.limit == 0 || c.sets < c.limit) {
			c.unacked = append(c.unacked, c.setCommand(c.sets)...)
			c.sets++
			c.inflight++
		}
	}
	if c.sndUna != c.sndNxt && now-c.lastProgress > rtoInsns {
		c.sndNxt, c.lastProgress = c.sndUna, now // go back N
		if c.state == 1 {
			c.sndNxt = c.iss + 1
			c.send(tcpSYN, c.iss, nil, true)
		}
	}
	if c.state == 2 {
		for {
			sent := c.sndNxt - c.sndUna
			n := min(uint32(len(c.unacked))-sent, tcpMSS, c.sndWnd-min(sent, c.sndWnd))
			if n == 0 {
				break
			}
			c.send(tcpACK|tcpPSH, c.sndNxt, c.unacked[sent:sent+n], false)
			c.sndNxt += n
		}
	}
	out := c.pendingFrames
	c.pendingFrames = nil
	return out
}

func (c *kvClient) station() testsupport.Station { return testsupport.Station{MAC: c.mac, IP: c.ip} }

func (c *kvClient) send(flags byte, seq uint32, data []byte, mss bool) {
	seg := testsupport.TCPSegment{SrcPort: c.port, DstPort: kvPort, Seq: seq, Flags: flags, Window: 65535, Data: data}
	if flags&tcpACK != 0 {
		seg.Ack = c.rcvNxt
	}
	if mss {
		seg.Options = []byte{2, 4, tcpMSS >> 8, tcpMSS & 0xff}
	}
	guest := testsupport.Station{MAC: c.guestMAC, IP: c.guestIP}
	c.pendingFrames = append(c.pendingFrames, testsupport.TCP(c.station(), guest, seg))
}
