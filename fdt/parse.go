package fdt

import (
	"errors"
	"fmt"
	"strings"
)

// Node is a parsed device tree node. The root's Name is "".
type Node struct {
	Name     string
	Props    []Property
	Children []*Node
}

// Property is a parsed property; Value is a copy owned by the Property.
type Property struct {
	Name  string
	Value []byte
}

// Tree is a parsed blob: the root node and the header's other contents.
type Tree struct {
	Root         *Node
	BootCPU      uint32
	Reservations []Reservation
}

// MaxDepth bounds node nesting in parsed blobs, so that callers that walk a
// tree recursively cannot be driven into deep recursion by a hostile blob.
const MaxDepth = 64

// Parse parses a blob and returns its root node.
func Parse(blob []byte) (*Node, error) {
	t, err := ParseTree(blob)
	if err != nil {
		return nil, err
	}
	return t.Root, nil
}

// ParseTree parses a blob. The input is untrusted: every offset and length
// is checked against the blob and its blocks, and errors are returned
// instead of panics.
func ParseTree(blob []byte) (*Tree, error) {
	if len(blob) < headerSize {
		return nil, errors.New("fdt: blob shorter than the header")
	}
	h := func(i int) uint64 { return uint64(be.Uint32(blob[4*i:])) }
	magic, total, offStruct, offStrings, offRsv := h(0), h(1), h(2), h(3), h(4)
	version, lastComp, bootCPU, sizeStrings, sizeStruct := h(5), h(6), h(7), h(8), h(9)
	switch {
	case magic != Magic:
		return nil, errors.New("fdt: bad magic")
	case total < headerSize || total > uint64(len(blob)):
		return nil, fmt.Errorf("fdt: totalsize %d outside 40..%d", total, len(blob))
	case version < Version || lastComp > Version:
		return nil, fmt.Errorf("fdt: version %d (last compatible %d) not supported", version, lastComp)
	case offRsv%8 != 0 || offRsv < headerSize || offRsv > total:
		return nil, errors.New("fdt: bad memory reservation block offset")
	case offStruct%4 != 0 || offStruct < headerSize || offStruct+sizeStruct > total:
		return nil, errors.New("fdt: structure block outside the blob")
	case offStrings < headerSize || offStrings+sizeStrings > total:
		return nil, errors.New("fdt: strings block outside the blob")
	}
	t := &Tree{BootCPU: uint32(bootCPU)}
	blob = blob[:total]

	// Memory reservation block: 16-byte entries up to an all-zero one.
	for off := offRsv; ; off += 16 {
		if off+16 > total {
			return nil, errors.New("fdt: unterminated memory reservation block")
		}
		r := Reservation{be.Uint64(blob[off:]), be.Uint64(blob[off+8:])}
		if r == (Reservation{}) {
			break
		}
		t.Reservations = append(t.Reservations, r)
	}

	p := parser{st: blob[offStruct : offStruct+sizeStruct], strs: blob[offStrings : offStrings+sizeStrings]}
	root, err := p.structure()
	if err != nil {
		return nil, err
	}
	t.Root = root
	return t, nil
}

type parser struct {
	st, strs []byte
	pos      int
}

func (p *parser) token() (uint32, error) {
	if p.pos+4 > len(p.st) {
		return 0, errors.New("fdt: structure block ends without FDT_END")
	}
	v := be.Uint32(p.st[p.pos:])
	p.pos += 4
	return v, nil
}

// cstring returns the NUL-terminated string at b[off:].
func cstring(b []byte, off int) (string, int, bool) {
	if off < 0 || off > len(b) {
		return "", 0, false
	}
	for i := off; i < len(b); i++ {
		if b[i] == 0 {
			return string(b[off:i]), i + 1, true
		}
	}
	return "", 0, false
}

// structure parses the structure block (DTSpec 5.4): exactly one root node,
// then FDT_END, with FDT_NOP allowed anywhere between tokens.
func (p *parser) structure() (*Node, error) {
	var root *Node
	var stack []*Node
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case tokNop:
		case tokBeginNode:
			if root != nil && len(stack) == 0 {
				return nil, errors.New("fdt: more than one root node")
			}
			if len(stack) >= MaxDepth {
				return nil, errors.New("fdt: nodes nested too deeply")
			}
			name, next, ok := cstring(p.st, p.pos)
			if !ok {
				return nil, errors.New("fdt: unterminated node name")
			}
			p.pos = align4(next)
			n := &Node{Name: name}
			if root == nil {
				if name != "" {
					return nil, fmt.Errorf("fdt: root node named %q", name)
				}
				root = n
			} else {
				if name == "" || strings.Contains(name, "/") {
					return nil, fmt.Errorf("fdt: bad node name %q", name)
				}
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, n)
			}
			stack = append(stack, n)
		case tokEndNode:
			if len(stack) == 0 {
				return nil, errors.New("fdt: FDT_END_NODE without a node")
			}
			stack = stack[:len(stack)-1]
		case tokProp:
			if len(stack) == 0 {
				return nil, errors.New("fdt: property outside a node")
			}
			length, err := p.token()
			if err != nil {
				return nil, err
			}
			nameOff, err := p.token()
			if err != nil {
				return nil, err
			}
			if uint64(length) > uint64(len(p.st)-p.pos) {
				return nil, errors.New("fdt: property value outside the structure block")
			}
			if uint64(nameOff) >= uint64(len(p.strs)) {
				return nil, errors.New("fdt: property name offset outside the strings block")
			}
			name, _, ok := cstring(p.strs, int(nameOff))
			if !ok || name == "" {
				return nil, errors.New("fdt: bad property name")
			}
			val := append([]byte(nil), p.st[p.pos:p.pos+int(length)]...)
			p.pos = align4(p.pos + int(length))
			n := stack[len(stack)-1]
			n.Props = append(n.Props, Property{Name: name, Value: val})
		case tokEnd:
			if root == nil || len(stack) != 0 {
				return nil, errors.New("fdt: FDT_END inside a node or before the root")
			}
			return root, nil
		default:
			return nil, fmt.Errorf("fdt: unknown token %#x at %d", tok, p.pos-4)
		}
	}
}

// Prop returns the property called name, or nil.
func (n *Node) Prop(name string) *Property {
	for i := range n.Props {
		if n.Props[i].Name == name {
			return &n.Props[i]
		}
	}
	return nil
}

// Child returns the child called name, or nil. A name without a unit
// address also matches the first child with that node-name and any unit
// address (DTSpec 2.2.3 allows omitting it when unambiguous).
func (n *Node) Child(name string) *Node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	if !strings.Contains(name, "@") {
		for _, c := range n.Children {
			if base, _, _ := strings.Cut(c.Name, "@"); base == name {
				return c
			}
		}
	}
	return nil
}

// Find returns the node at an absolute path such as "/soc/serial@10000000",
// or nil.
func (n *Node) Find(path string) *Node {
	if !strings.HasPrefix(path, "/") {
		return nil
	}
	for _, part := range strings.Split(path, "/") {
		if part == "" {
			continue
		}
		if n = n.Child(part); n == nil {
			return nil
		}
	}
	return n
}

// U32 returns the value of a single-cell property.
func (p *Property) U32() (uint32, error) {
	if len(p.Value) != 4 {
		return 0, fmt.Errorf("fdt: %s: %d bytes, want 4", p.Name, len(p.Value))
	}
	return be.Uint32(p.Value), nil
}

// U32s returns the value as 32-bit cells.
func (p *Property) U32s() ([]uint32, error) {
	if len(p.Value)%4 != 0 {
		return nil, fmt.Errorf("fdt: %s: %d bytes is not whole cells", p.Name, len(p.Value))
	}
	vs := make([]uint32, len(p.Value)/4)
	for i := range vs {
		vs[i] = be.Uint32(p.Value[4*i:])
	}
	return vs, nil
}

// U64s returns the value as 64-bit (two-cell) numbers.
func (p *Property) U64s() ([]uint64, error) {
	if len(p.Value)%8 != 0 {
		return nil, fmt.Errorf("fdt: %s: %d bytes is not whole u64s", p.Name, len(p.Value))
	}
	vs := make([]uint64, len(p.Value)/8)
	for i := range vs {
		vs[i] = be.Uint64(p.Value[8*i:])
	}
	return vs, nil
}

// Strings returns the value as a string list.
func (p *Property) Strings() ([]string, error) {
	if len(p.Value) == 0 || p.Value[len(p.Value)-1] != 0 {
		return nil, fmt.Errorf("fdt: %s is not a NUL-terminated string list", p.Name)
	}
	return strings.Split(string(p.Value[:len(p.Value)-1]), "\x00"), nil
}

// StringValue returns the value of a single-string property.
func (p *Property) StringValue() (string, error) {
	ss, err := p.Strings()
	if err != nil {
		return "", err
	}
	if len(ss) != 1 {
		return "", fmt.Errorf("fdt: %s holds %d strings", p.Name, len(ss))
	}
	return ss[0], nil
}
