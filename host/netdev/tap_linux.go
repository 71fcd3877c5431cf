package netdev

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxTAPFrame is the read buffer size: the largest frame a TAP without
// offloads can deliver (64 KiB covers any MTU).
const maxTAPFrame = 65536

// TAP is a Linux TAP device (IFF_TAP|IFF_NO_PI: raw Ethernet frames, no
// packet-information prefix). A reader goroutine queues received frames;
// nothing is ever delivered to the guest from that goroutine.
type TAP struct {
	f        *os.File
	name     string
	in       *inbox
	done     chan struct{}
	closing  atomic.Bool
	once     sync.Once
	txErrors atomic.Uint64
	rxErrors atomic.Uint64
}

var _ Backend = (*TAP)(nil)

// OpenTAP attaches to the TAP interface name in the calling thread's
// network namespace, creating it if it does not exist (this needs
// CAP_NET_ADMIN). An empty name lets the kernel choose ("tap%d").
// Bringing the interface up and addressing it is left to the caller.
func OpenTAP(name string) (*TAP, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("netdev: TAP name %q too long", name)
	}
	// Non-blocking so os.File uses the runtime poller: Read parks the
	// goroutine instead of a thread, and Close wakes a blocked Read.
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("netdev: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netdev: TAP name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netdev: TUNSETIFF %q: %w", name, err)
	}
	t := &TAP{
		f:    os.NewFile(uintptr(fd), "/dev/net/tun"),
		name: ifr.Name(),
		in:   newInbox(DefaultQueueFrames),
		done: make(chan struct{}),
	}
	go t.reader()
	return t, nil
}

// Name is the interface name the kernel assigned.
func (t *TAP) Name() string { return t.name }

func (t *TAP) reader() {
	defer close(t.done)
	buf := make([]byte, maxTAPFrame)
	for {
		n, err := t.f.Read(buf)
		if err != nil {
			if t.closing.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			// E.g. EIO while the interface is being torn down: avoid
			// spinning, keep serving if it recovers.
			t.rxErrors.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if n > 0 {
			t.in.push(append([]byte(nil), buf[:n]...))
		}
	}
}

// Transmit writes one frame to the TAP (the frame leaves the guest). Errors
// (interface down, queue full) drop the frame and are counted.
func (t *TAP) Transmit(frame []byte) {
	if t.closing.Load() {
		return
	}
	if _, err := t.f.Write(frame); err != nil {
		t.txErrors.Add(1)
	}
}

// TryReceive implements Backend.
func (t *TAP) TryReceive() ([]byte, bool) { return t.in.pop() }

// Ready implements Backend.
func (t *TAP) Ready() <-chan struct{} { return t.in.ready }

// Stats reports frames dropped because the receive queue was full, and
// transmit / receive errors.
func (t *TAP) Stats() (rxDropped, txErrors, rxErrors uint64) {
	return t.in.drops(), t.txErrors.Load(), t.rxErrors.Load()
}

// Close detaches from the TAP and waits for the reader goroutine to exit.
// A non-persistent TAP created by OpenTAP disappears with it.
func (t *TAP) Close() error {
	var err error
	t.once.Do(func() {
		t.closing.Store(true)
		err = t.f.Close()
		<-t.done
	})
	return err
}
