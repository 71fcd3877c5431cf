package netdev

import (
	"bytes"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/internal/testsupport"
)

const testEtherType = 0x88b5 // IEEE 802 local experimental

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func testFrame(payload string) []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, testEtherType >> 8, testEtherType & 0xff}
	return append(f, payload...)
}

// netnsEnv holds a TAP and an AF_PACKET socket bound to it, both created
// inside a fresh, anonymous network namespace owned by one locked OS
// thread. Nothing in that namespace is connected anywhere, so no test
// traffic can leave it. The namespace disappears when the thread exits
// and the descriptors are closed.
type netnsEnv struct {
	tap     *TAP
	pkt     int
	ifindex int
	stop    chan struct{}
	stopped chan struct{}
}

func newNetnsEnv(t *testing.T) *netnsEnv {
	testsupport.Root(t, "a network namespace and a TAP device")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testsupport.Missing(t, "/dev/net/tun (the tun module)")
	}
	e := &netnsEnv{stop: make(chan struct{}), stopped: make(chan struct{})}
	errc := make(chan error, 1)
	skip := make(chan string, 1)
	go func() {
		defer close(e.stopped)
		// Never unlocked: the runtime terminates the thread when this
		// goroutine returns, so the namespace never leaks to other
		// goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip <- "unshare(CLONE_NEWNET): " + err.Error()
			return
		}
		err := func() error {
			tap, err := OpenTAP("ftvmtest0")
			if err != nil {
				return err
			}
			e.tap = tap
			s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(s)
			ifr, _ := unix.NewIfreq(tap.Name())
			if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
				return err
			}
			ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
			if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
				return err
			}
			ifr, _ = unix.NewIfreq(tap.Name())
			if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
				return err
			}
			e.ifindex = int(ifr.Uint32())
			pkt, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(testEtherType)))
			if err != nil {
				return err
			}
			e.pkt = pkt
			return unix.Bind(pkt, &unix.SockaddrLinklayer{Protocol: htons(testEtherType), Ifindex: e.ifindex})
		}()
		errc <- err
		<-e.stop
	}()
	select {
	case msg := <-skip:
		testsupport.Missing(t, "a network namespace: %s", msg)
	case err := <-errc:
		t.Cleanup(e.close)
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *netnsEnv) close() {
	if e.tap != nil {
		e.tap.Close()
	}
	if e.pkt > 0 {
		unix.Close(e.pkt)
	}
	close(e.stop)
	<-e.stopped
}

// recvPacket reads frames from the packet socket until one carries
// payload, or the deadline passes.
func (e *netnsEnv) recvPacket(t *testing.T, want []byte) {
	t.Helper()
	buf := make([]byte, 65536)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(e.pkt), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
			t.Fatal(err)
		} else if n == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(e.pkt, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		if bytes.Equal(buf[:n], want) {
			return
		}
	}
	t.Fatalf("frame not seen on the TAP interface")
}

func TestTAPRoundTrip(t *testing.T) {
	e := newNetnsEnv(t)
	// Guest -> host: Transmit writes into the TAP, the kernel receives it
	// on the interface, where the packet socket sees it.
	out := testFrame("ftvm guest to host")
	e.tap.Transmit(out)
	e.recvPacket(t, out)

	// Host -> guest: the kernel sends a frame out of the interface, the
	// reader goroutine queues it for TryReceive.
	in := testFrame("ftvm host to guest")
	sa := &unix.SockaddrLinklayer{Protocol: htons(testEtherType), Ifindex: e.ifindex, Halen: 6}
	copy(sa.Addr[:], in[:6])
	if err := unix.Sendto(e.pkt, in, 0, sa); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-e.tap.Ready():
		case <-deadline:
			t.Fatalf("frame from host not received")
		case <-time.After(50 * time.Millisecond):
		}
		for {
			f, ok := e.tap.TryReceive()
			if !ok {
				break
			}
			// Other frames (e.g. IPv6 neighbour discovery) may appear.
			if bytes.Equal(f, in) {
				goto done
			}
		}
	}
done:
	if err := e.tap.Close(); err != nil {
		t.Fatal(err)
	}
	e.tap.Transmit(out) // after Close: dropped, no panic
	if _, tx, _ := e.tap.Stats(); tx != 0 {
		t.Fatalf("tx errors %d", tx)
	}
}

func TestOpenTAPBadName(t *testing.T) {
	if _, err := OpenTAP("a-name-that-is-way-too-long-for-linux"); err == nil {
		t.Fatalf("long name accepted")
	}
}
