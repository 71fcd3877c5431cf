package testsupport

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a target and injects faults: it can
// hold either direction (the bytes stay queued, as on a link that stopped
// delivering), drop what the target answers (requests arrive, answers are
// lost), corrupt one byte of the next answer, or cut every connection.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	hold  [2]bool // [0]: client to target, [1]: target to client
	drop  bool    // discard what the target sends
	flip  bool    // corrupt one byte of the next target-to-client read
	conns []net.Conn
}

// NewProxy listens on an ephemeral loopback port and forwards each
// connection to target. Everything stops when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	tb.Cleanup(func() {
		ln.Close()
		p.Hold(false, false)
		p.Cut()
	})
	return p
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(u, c, 0)
		go p.pipe(c, u, 1)
	}
}

func (p *Proxy) pipe(dst, src net.Conn, dir int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.hold[dir] {
			p.cond.Wait()
		}
		if dir == 1 && p.drop {
			n = 0
		}
		if dir == 1 && p.flip && n > 0 {
			buf[n/2] ^= 0x01
			p.flip = false
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			return
		}
	}
}

// Hold stops (true) or resumes the delivery of each direction: up is
// client to target, down target to client.
func (p *Proxy) Hold(up, down bool) {
	p.mu.Lock()
	p.hold = [2]bool{up, down}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// DropAnswers discards (true) or delivers again what the target sends.
func (p *Proxy) DropAnswers(drop bool) {
	p.mu.Lock()
	p.drop = drop
	p.mu.Unlock()
}

// Tamper flips a bit in the next data going from the target to the client.
func (p *Proxy) Tamper() {
	p.mu.Lock()
	p.flip = true
	p.mu.Unlock()
}

// Cut closes every connection made through the proxy so far.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
