package machine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math/bits"

	"ftvm/vm"
)

// Digest returns SHA-256 digests of the machine state by component: "cpu"
// (the harts, and with several of them whose turn it is), "ram",
// "devices" and "clock"; Sum covers them all. Two runs of
// the same machine with the same inputs must give the same digest at the
// same instruction count.
//
// RAM is hashed page by page and the page hashes are kept between calls:
// only pages written since the previous digest (the digest's own dirty
// bitmap, fed from the hart's, which DMA also marks; see dirty.go) are
// hashed again, so periodic digests cost time in proportion to what the
// guest wrote, not to its memory size.
func (m *Machine) Digest() vm.Digest {
	var parts []vm.Component
	add := func(name string, sum [32]byte) { parts = append(parts, vm.Component{Name: name, Sum: sum}) }

	d := sha256.New()
	for _, h := range m.harts {
		binary.Write(d, binary.LittleEndian, h.State())
	}
	if len(m.harts) > 1 {
		b, _ := json.Marshal(m.schedState())
		d.Write(b)
	}
	add("cpu", sum(d))

	add("ram", m.ramDigest())

	d.Reset()
	// Device states are plain structs: JSON gives a canonical encoding
	// (struct fields in declaration order).
	for _, v := range m.deviceStates() {
		b, _ := json.Marshal(v)
		d.Write(b)
	}
	add("devices", sum(d))

	d.Reset()
	binary.Write(d, binary.LittleEndian, [3]uint64{m.clock.base, m.clock.at, m.clock.ipt})
	add("clock", sum(d))

	d.Reset()
	for _, p := range parts {
		d.Write([]byte(p.Name))
		d.Write(p.Sum[:])
	}
	return vm.Digest{Sum: sum(d), Parts: parts}
}

func sum(d interface{ Sum([]byte) []byte }) (out [32]byte) {
	d.Sum(out[:0])
	return out
}

func (m *Machine) ramDigest() [32]byte {
	m.foldDirty()
	dirty := m.digestDirty
	npages := len(m.ram) / pageSize
	if m.pageSums == nil {
		m.pageSums = make([][32]byte, npages)
		m.groupSums = make([][32]byte, (npages+63)/64)
		for i := range dirty {
			dirty[i] = ^uint64(0)
		}
	}
	// Pages are hashed in groups of 64 (one word of the dirty bitmap), and
	// the RAM digest is the hash of the group hashes: a digest costs the
	// pages written and their groups, not a pass over every page's hash
	// (2 MiB of them for 256 MiB of RAM).
	for w, bitsWord := range dirty {
		if bitsWord == 0 {
			continue
		}
		for word := bitsWord; word != 0; {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			if p := w*64 + b; p < npages {
				m.pageSums[p] = pageSum(m.ram[p*pageSize : (p+1)*pageSize])
			}
		}
		m.groupSum(w)
	}
	clear(dirty)
	d := sha256.New()
	for i := range m.groupSums {
		d.Write(m.groupSums[i][:])
	}
	return sum(d)
}

// groupSum recomputes the hash of page group g (pages 64g to 64g+63).
func (m *Machine) groupSum(g int) {
	d := sha256.New()
	for _, s := range m.pageSums[g*64 : min(g*64+64, len(m.pageSums))] {
		d.Write(s[:])
	}
	d.Sum(m.groupSums[g][:0])
}

// zeroPageSum is the SHA-256 of an all-zero page. Most of a guest's RAM is
// untouched, and testing for zero is much faster than hashing, which makes
// the first digest of a machine (after a boot, a restore or a state
// transfer) cheap.
var zeroPageSum = sha256.Sum256(make([]byte, pageSize))

func pageSum(pg []byte) [32]byte {
	if isZero(pg) {
		return zeroPageSum
	}
	return sha256.Sum256(pg)
}

func (m *Machine) deviceStates() []any {
	s := []any{m.clint.State(), m.plic.State(), m.uart.State()}
	if m.blkTr != nil {
		s = append(s, m.blkTr.State(), m.blk.State())
	}
	if m.netTr != nil {
		s = append(s, m.netTr.State(), m.net.State())
	}
	return s
}
