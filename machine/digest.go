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

// pageGroup holds the hashes of 64 consecutive RAM pages.
type pageGroup [64][32]byte

func (m *Machine) ramDigest() [32]byte {
	m.foldDirty()
	dirty := m.digestDirty
	npages := m.Pages()
	if m.groupSums == nil {
		// The first digest: the pages never written are zero and are
		// not read (ram.go); the groups none of whose pages was written
		// keep the hash of a group of zero pages.
		ngroups := (npages + 63) / 64
		m.groupPages = make([]*pageGroup, ngroups)
		m.groupSums = make([][32]byte, ngroups)
		for g := range m.groupSums {
			m.groupSums[g] = zeroGroupSum(min(64, npages-g*64))
		}
		copy(dirty, m.written)
	}
	// Pages are hashed in groups of 64 (one word of the dirty bitmap), and
	// the RAM digest is the hash of the group hashes: a digest costs the
	// pages written and their groups, not a pass over every page's hash
	// (2 MiB of them for 256 MiB of RAM).
	for w, bitsWord := range dirty {
		if bitsWord == 0 {
			continue
		}
		grp := m.groupPages[w]
		if grp == nil {
			grp = new(pageGroup)
			for i := range grp {
				grp[i] = zeroPageSum
			}
			m.groupPages[w] = grp
		}
		for word := bitsWord; word != 0; {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			if p := w*64 + b; p < npages {
				grp[b] = pageSum(m.ram[p*pageSize : (p+1)*pageSize])
			}
		}
		d := sha256.New()
		for _, s := range grp[:min(64, npages-w*64)] {
			d.Write(s[:])
		}
		d.Sum(m.groupSums[w][:0])
	}
	clear(dirty)
	d := sha256.New()
	for i := range m.groupSums {
		d.Write(m.groupSums[i][:])
	}
	return sum(d)
}

// zeroGroupSum is the hash of a group of n zero pages' hashes.
func zeroGroupSum(n int) [32]byte {
	if n == 64 {
		return zeroGroup64
	}
	return hashZeroGroup(n)
}

var zeroGroup64 = hashZeroGroup(64)

func hashZeroGroup(n int) [32]byte {
	d := sha256.New()
	for range n {
		d.Write(zeroPageSum[:])
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
	if m.sharedTr != nil {
		s = append(s, m.sharedTr.State(), m.shared.State())
	}
	return append(s, m.rtc.State())
}
