// Package fdt writes and reads flattened device tree blobs (DTB), as
// described in the Devicetree Specification v0.4, chapter 5 ("Flattened
// Devicetree (DTB) Format"). The writer produces version 17 blobs; the
// parser accepts version 17 blobs (anything dtc writes) and treats its input
// as untrusted.
package fdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Header constants (DTSpec 5.2).
const (
	Magic           = 0xd00dfeed
	Version         = 17
	LastCompVersion = 16
	headerSize      = 40
)

// Structure block tokens (DTSpec 5.4.1).
const (
	tokBeginNode = 0x1
	tokEndNode   = 0x2
	tokProp      = 0x3
	tokNop       = 0x4
	tokEnd       = 0x9
)

// Reservation is a memory reservation block entry (DTSpec 5.3).
type Reservation struct {
	Address, Size uint64
}

var be = binary.BigEndian

func align4(n int) int { return (n + 3) &^ 3 }

// Builder builds a blob. Calls record the first error, which Finish
// returns; later calls after an error do nothing, so a tree can be written
// without checking every call.
type Builder struct {
	bootCPU uint32
	rsv     []Reservation
	st      []byte            // structure block
	strs    []byte            // strings block
	strOff  map[string]uint32 // name -> offset in strs (lookups only)
	open    []*openNode
	done    bool // the root node has been closed
	err     error
}

// openNode tracks what DTSpec requires of a node being written.
type openNode struct {
	props    []string // property names, to reject duplicates (DTSpec 2.2.4)
	children bool     // properties must precede subnodes (DTSpec 5.4.2)
}

// New returns an empty Builder.
func New() *Builder {
	return &Builder{strOff: map[string]uint32{}}
}

// SetBootCPU sets the header's boot_cpuid_phys (the reg of the boot CPU).
func (b *Builder) SetBootCPU(id uint32) { b.bootCPU = id }

// AddReservation adds a memory reservation block entry.
func (b *Builder) AddReservation(addr, size uint64) {
	b.rsv = append(b.rsv, Reservation{addr, size})
}

func (b *Builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("fdt: "+format, args...)
	}
}

func (b *Builder) u32(v uint32) { b.st = be.AppendUint32(b.st, v) }

// BeginNode opens a node. The first node is the root and must be named "";
// every other node needs a valid name (DTSpec 2.2.1), such as
// "uart@10000000".
func (b *Builder) BeginNode(name string) {
	if b.err != nil {
		return
	}
	switch {
	case b.done:
		b.fail("node %q after the root node was closed", name)
		return
	case len(b.open) == 0 && name != "":
		b.fail("the root node must be named \"\", not %q", name)
		return
	case len(b.open) > 0 && !validNodeName(name):
		b.fail("invalid node name %q", name)
		return
	}
	if len(b.open) > 0 {
		b.open[len(b.open)-1].children = true
	}
	b.open = append(b.open, &openNode{})
	b.u32(tokBeginNode)
	b.st = append(b.st, name...)
	b.st = append(b.st, 0)
	for len(b.st)%4 != 0 {
		b.st = append(b.st, 0)
	}
}

// EndNode closes the innermost open node.
func (b *Builder) EndNode() {
	if b.err != nil {
		return
	}
	if len(b.open) == 0 {
		b.fail("EndNode without an open node")
		return
	}
	b.open = b.open[:len(b.open)-1]
	b.u32(tokEndNode)
	if len(b.open) == 0 {
		b.done = true
	}
}

// PropBytes adds a property with a raw value to the innermost open node.
func (b *Builder) PropBytes(name string, value []byte) {
	if b.err != nil {
		return
	}
	if len(b.open) == 0 {
		b.fail("property %q outside a node", name)
		return
	}
	n := b.open[len(b.open)-1]
	switch {
	case !validPropName(name):
		b.fail("invalid property name %q", name)
		return
	case n.children:
		b.fail("property %q after a subnode", name)
		return
	case uint64(len(value)) > 1<<31:
		b.fail("property %q too long", name)
		return
	}
	for _, p := range n.props {
		if p == name {
			b.fail("duplicate property %q", name)
			return
		}
	}
	n.props = append(n.props, name)
	b.u32(tokProp)
	b.u32(uint32(len(value)))
	b.u32(b.stringOffset(name))
	b.st = append(b.st, value...)
	for len(b.st)%4 != 0 {
		b.st = append(b.st, 0)
	}
}

// stringOffset returns the offset of name in the strings block, adding it
// the first time: every name is stored once (DTSpec 5.5).
func (b *Builder) stringOffset(name string) uint32 {
	if off, ok := b.strOff[name]; ok {
		return off
	}
	off := uint32(len(b.strs))
	b.strs = append(b.strs, name...)
	b.strs = append(b.strs, 0)
	b.strOff[name] = off
	return off
}

// PropEmpty adds a property with no value (e.g. "interrupt-controller").
func (b *Builder) PropEmpty(name string) { b.PropBytes(name, nil) }

// PropU32 adds a single <u32> property.
func (b *Builder) PropU32(name string, v uint32) { b.PropU32s(name, v) }

// PropU32s adds a property of big-endian 32-bit cells.
func (b *Builder) PropU32s(name string, vs ...uint32) {
	buf := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		buf = be.AppendUint32(buf, v)
	}
	b.PropBytes(name, buf)
}

// PropU64 adds a single <u64> property (two cells, high first).
func (b *Builder) PropU64(name string, v uint64) { b.PropU64s(name, v) }

// PropU64s adds a property of big-endian 64-bit values, as used for "reg"
// with #address-cells = #size-cells = 2.
func (b *Builder) PropU64s(name string, vs ...uint64) {
	buf := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		buf = be.AppendUint64(buf, v)
	}
	b.PropBytes(name, buf)
}

// PropString adds a NUL-terminated string property.
func (b *Builder) PropString(name, s string) { b.PropStrings(name, s) }

// PropStrings adds a <stringlist> property (DTSpec 2.2.4.1): the strings
// concatenated, each NUL-terminated.
func (b *Builder) PropStrings(name string, ss ...string) {
	var buf []byte
	for _, s := range ss {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				b.fail("property %q: string contains NUL", name)
				return
			}
		}
		buf = append(buf, s...)
		buf = append(buf, 0)
	}
	b.PropBytes(name, buf)
}

// Finish returns the blob, or the first error of the build.
func (b *Builder) Finish() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if !b.done {
		if len(b.open) == 0 {
			return nil, errors.New("fdt: no root node")
		}
		return nil, fmt.Errorf("fdt: %d unclosed node(s)", len(b.open))
	}
	// Layout (DTSpec 5.1): header, memory reservation block (8-aligned,
	// ended by a zero entry), structure block, strings block.
	offRsv := headerSize
	offStruct := offRsv + 16*(len(b.rsv)+1)
	structSize := len(b.st) + 4 // + FDT_END
	offStrings := offStruct + structSize
	total := offStrings + len(b.strs)
	if uint64(total) > 1<<31 {
		return nil, errors.New("fdt: blob too large")
	}

	out := make([]byte, 0, total)
	for _, v := range []uint32{
		Magic, uint32(total), uint32(offStruct), uint32(offStrings),
		uint32(offRsv), Version, LastCompVersion, b.bootCPU,
		uint32(len(b.strs)), uint32(structSize),
	} {
		out = be.AppendUint32(out, v)
	}
	for _, r := range append(b.rsv, Reservation{}) {
		out = be.AppendUint64(out, r.Address)
		out = be.AppendUint64(out, r.Size)
	}
	out = append(out, b.st...)
	out = be.AppendUint32(out, tokEnd)
	out = append(out, b.strs...)
	return out, nil
}

// validNodeName checks a node name against DTSpec 2.2.1 (Table 2.1):
// node-name[@unit-address], node-name 1..31 characters.
func validNodeName(s string) bool {
	name, unit, hasUnit := strings.Cut(s, "@")
	if len(name) < 1 || len(name) > 31 || (hasUnit && unit == "") {
		return false
	}
	for _, part := range []string{name, unit} {
		for i := 0; i < len(part); i++ {
			if !isNodeChar(part[i]) {
				return false
			}
		}
	}
	return true
}

func isNodeChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == ',' || c == '.' || c == '_' || c == '+' || c == '-'
}

// validPropName checks a property name against DTSpec 2.2.4.1 (Table 2.2).
func validPropName(s string) bool {
	if len(s) < 1 || len(s) > 31 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isNodeChar(c) && c != '?' && c != '#' {
			return false
		}
	}
	return true
}
