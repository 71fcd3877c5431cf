package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/internal/testsupport"
)

// lab is a small network of namespaces for the replication tests, all
// created by the test and removed when it ends; nothing leaves it:
//
//	NS-lan     bridges: mgmt (192.168.50.0/24, the witness at .100),
//	           ftlog (172.16.0.0/24, the log channel between replicas),
//	           guest (10.0.2.0/24 at layer 2: the guests' LAN)
//	NS-h1..hN  replica hosts: mgmt 192.168.50.N, ftlog 172.16.0.N, and
//	           a TAP "tap0" for the guest bridged onto the guest LAN
//	NS-client  10.0.2.2 on the guest LAN: the guest's clients
//
// Cutting a host's ftlog link separates it from the other replicas while
// both still reach the witness; cutting its mgmt link too isolates it.
type lab struct {
	prefix string
	hosts  int
}

const witnessIP = "192.168.50.100"

func newLab(t *testing.T, hosts int) *lab {
	t.Helper()
	testsupport.Root(t, "network namespaces")
	testsupport.Tool(t, "ip", "iproute2")
	l := &lab{prefix: fmt.Sprintf("ftr%d", os.Getpid()%100000), hosts: hosts}
	t.Cleanup(func() {
		for _, ns := range l.namespaces() {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	ip := func(args ...string) {
		t.Helper()
		if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	for _, ns := range l.namespaces() {
		ip("netns", "add", ns)
		ip("-n", ns, "link", "set", "lo", "up")
	}
	lan := l.ns("lan")
	for _, br := range []string{"mgmt", "ftlog", "guest"} {
		ip("-n", lan, "link", "add", br, "type", "bridge")
		// No STP delay: ports forward as soon as they are up.
		ip("-n", lan, "link", "set", br, "type", "bridge", "forward_delay", "0", "stp_state", "0")
		ip("-n", lan, "link", "set", br, "up")
	}
	ip("-n", lan, "addr", "add", witnessIP+"/24", "dev", "mgmt")
	// veth connects dev in ns to bridge br of the lan.
	veth := func(ns, dev, br string, n int) {
		peer := fmt.Sprintf("%s%d", br, n)
		ip("link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer, "netns", lan)
		ip("-n", lan, "link", "set", peer, "master", br)
		ip("-n", lan, "link", "set", peer, "up")
		ip("-n", ns, "link", "set", dev, "up")
	}
	for i := 1; i <= hosts; i++ {
		h := l.host(i)
		veth(h, "mgmt", "mgmt", i)
		ip("-n", h, "addr", "add", fmt.Sprintf("192.168.50.%d/24", i), "dev", "mgmt")
		veth(h, "ftlog", "ftlog", i)
		ip("-n", h, "addr", "add", fmt.Sprintf("172.16.0.%d/24", i), "dev", "ftlog")
		// The guest's NIC: tap0 and the uplink on a host bridge.
		veth(h, "guplink", "guest", i)
		ip("-n", h, "link", "add", "gbr", "type", "bridge")
		ip("-n", h, "link", "set", "gbr", "type", "bridge", "forward_delay", "0", "stp_state", "0")
		ip("-n", h, "tuntap", "add", "dev", "tap0", "mode", "tap")
		ip("-n", h, "link", "set", "tap0", "master", "gbr")
		ip("-n", h, "link", "set", "guplink", "master", "gbr")
		ip("-n", h, "link", "set", "tap0", "up")
		ip("-n", h, "link", "set", "gbr", "up")
	}
	veth(l.ns("client"), "eth0", "guest", 0)
	ip("-n", l.ns("client"), "addr", "add", "10.0.2.2/24", "dev", "eth0")
	return l
}

func (l *lab) ns(name string) string { return l.prefix + "-" + name }
func (l *lab) host(i int) string     { return l.ns(fmt.Sprintf("h%d", i)) }

func (l *lab) namespaces() []string {
	out := []string{l.ns("lan"), l.ns("client")}
	for i := 1; i <= l.hosts; i++ {
		out = append(out, l.host(i))
	}
	return out
}

// setLink brings a host's link up or down.
func (l *lab) setLink(t *testing.T, i int, dev string, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if b, err := exec.Command("ip", "-n", l.host(i), "link", "set", dev, state).CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s %s in %s: %v\n%s", dev, state, l.host(i), err, b)
	}
}

// command runs argv inside namespace ns.
func (l *lab) command(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// dial connects to addr from inside namespace ns. The socket is created by
// a thread switched into ns; once made, it works from any thread.
func dial(ns, addr string, timeout time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is never unlocked: it leaves the namespace by exiting
		// with this goroutine.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
