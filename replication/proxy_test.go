package replication

import (
	"io"
	"net"
	"sync"
	"testing"
)

// proxy forwards TCP connections to target and can hold the traffic of
// either direction (the bytes stay queued, as on a link that stopped
// delivering) or cut every connection.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	hold  [2]bool // [0]: client to target, [1]: target to client
	flip  bool    // corrupt one byte of the next target-to-client read
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setHold(false, false)
		p.cut()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
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

func (p *proxy) pipe(dst, src net.Conn, dir int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.hold[dir] {
			p.cond.Wait()
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
			if err == io.EOF {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			return
		}
	}
}

// setHold stops (true) or resumes the delivery of each direction.
func (p *proxy) setHold(up, down bool) {
	p.mu.Lock()
	p.hold = [2]bool{up, down}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// tamper flips a bit in the next data going from the target to the client.
func (p *proxy) tamper() {
	p.mu.Lock()
	p.flip = true
	p.mu.Unlock()
}

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
