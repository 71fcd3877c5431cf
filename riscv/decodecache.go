package riscv

// decodedPage caches the decodes of one 4 KiB page of RAM, one slot per
// halfword (compressed instructions may start at any even address).
type decodedPage struct {
	insts [pageSize / 2]inst
}

// decodeCache is indexed by RAM page number. A page is present only while
// nothing has written it since it was decoded: stores to it always take the
// slow path (see storeSlow) and drop it.
type decodeCache struct {
	pages []*decodedPage
	live  []uint64 // page numbers present, for flushAll
	free  []*decodedPage
	// engine, when set, holds translations of the cached pages and is told
	// whenever a page leaves the cache (engine.go).
	engine Engine
}

func (c *decodeCache) init(ramSize int) {
	c.pages = make([]*decodedPage, (ramSize+pageSize-1)/pageSize)
}

func (c *decodeCache) invalidate(p uint64) {
	dp := c.pages[p]
	if dp == nil {
		return
	}
	c.pages[p] = nil
	if c.engine != nil {
		c.engine.CodeChanged(p)
	}
	for i, q := range c.live {
		if q == p {
			c.live[i] = c.live[len(c.live)-1]
			c.live = c.live[:len(c.live)-1]
			break
		}
	}
	c.free = append(c.free, dp)
}

func (c *decodeCache) flushAll() {
	for _, p := range c.live {
		if dp := c.pages[p]; dp != nil {
			c.free = append(c.free, dp)
		}
		c.pages[p] = nil
	}
	c.live = c.live[:0]
	if c.engine != nil {
		c.engine.CodeFlushed()
	}
}

// page returns the decode page for RAM page p, creating it if needed. The
// second result reports whether it was created.
func (c *decodeCache) page(p uint64) (*decodedPage, bool) {
	if dp := c.pages[p]; dp != nil {
		return dp, false
	}
	var dp *decodedPage
	if n := len(c.free); n > 0 {
		dp = c.free[n-1]
		c.free = c.free[:n-1]
		*dp = decodedPage{}
	} else {
		dp = new(decodedPage)
	}
	c.pages[p] = dp
	c.live = append(c.live, p)
	return dp, true
}
