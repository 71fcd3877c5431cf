package machine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
)

// Digest is a SHA-256 over the whole machine state: the hart, RAM, and every
// device. Two runs of the same machine with the same inputs must give the
// same digest at the same instruction count.
func (m *Machine) Digest() [32]byte {
	d := sha256.New()
	binary.Write(d, binary.LittleEndian, m.hart.State())
	d.Write(m.ram)
	// Device states are plain structs: JSON gives a canonical encoding
	// (struct fields in declaration order).
	for _, v := range m.deviceStates() {
		b, _ := json.Marshal(v)
		d.Write(b)
	}
	binary.Write(d, binary.LittleEndian, [3]uint64{m.clock.base, m.clock.at, m.clock.ipt})
	var out [32]byte
	d.Sum(out[:0])
	return out
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
