package machine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math/bits"

	"ftvm/vm"
)

// Digest returns SHA-256 digests of the machine state by component: "cpu"
// (the hart), "ram", "devices" and "clock"; Sum covers them all. Two runs of
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
	binary.Write(d, binary.LittleEndian, m.hart.State())
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
	if m.pageSums == nil {
		m.pageSums = make([][32]byte, len(m.ram)/pageSize)
		for i := range dirty {
			dirty[i] = ^uint64(0)
		}
	}
	for w, bitsWord := range dirty {
		for bitsWord != 0 {
			b := bits.TrailingZeros64(bitsWord)
			bitsWord &^= 1 << b
			p := uint64(w)*64 + uint64(b)
			if p < uint64(len(m.pageSums)) {
				m.pageSums[p] = pageSum(m.ram[p*pageSize : (p+1)*pageSize])
			}
		}
	}
	clear(dirty)
	d := sha256.New()
	for i := range m.pageSums {
		d.Write(m.pageSums[i][:])
	}
	return sum(d)
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
