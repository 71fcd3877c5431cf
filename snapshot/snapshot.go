// Package snapshot is the container format of ftvm's snapshot files: a
// versioned header and a sequence of named, checksummed sections, one per
// component, as Firecracker and QEMU structure theirs. What goes in the
// sections is the machine's business; this package only frames them and
// refuses anything damaged.
//
// Layout (all integers little-endian or unsigned LEB128 varints):
//
//	magic    "FTVMSNAP" (8 bytes)
//	version  uint32 (1)
//	section* name length (uvarint, 1..64), name, payload length (uvarint),
//	         payload, CRC-32C of name and payload (uint32)
//	end      a section named "end" with an empty payload
//
// A reader needs no seeking, so snapshots can be streamed (to a new backup,
// later). Every length is bounded and payloads are read in chunks, so a
// hostile file cannot make the reader allocate more than it actually
// contains.
package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	magic   = "FTVMSNAP"
	Version = 1
	// MaxPayload bounds one section (the largest is guest RAM).
	MaxPayload = 64 << 30
	maxName    = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about a damaged snapshot.
var ErrCorrupt = errors.New("corrupt snapshot")

// Section is one named part of a snapshot.
type Section struct {
	Name string
	Data []byte
	// From, when set, is where Write reads the payload, Size bytes,
	// instead of Data: a disk image goes into a snapshot without being
	// held in memory.
	From io.ReaderAt
	Size int64
}

// Write writes sections as a snapshot.
func Write(w io.Writer, sections []Section) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(magic)
	binary.Write(bw, binary.LittleEndian, uint32(Version))
	var chunk []byte
	for _, s := range append(sections, Section{Name: "end"}) {
		size := int64(len(s.Data))
		if s.From != nil {
			size = s.Size
		}
		if s.Name == "" || len(s.Name) > maxName || size < 0 || uint64(size) > MaxPayload {
			return fmt.Errorf("snapshot: bad section %q (%d bytes)", s.Name, size)
		}
		var hdr []byte
		hdr = binary.AppendUvarint(hdr, uint64(len(s.Name)))
		bw.Write(hdr)
		bw.WriteString(s.Name)
		bw.Write(binary.AppendUvarint(nil, uint64(size)))
		crc := crc32.Checksum([]byte(s.Name), castagnoli)
		if s.From == nil {
			bw.Write(s.Data)
			crc = crc32.Update(crc, castagnoli, s.Data)
		} else {
			if chunk == nil {
				chunk = make([]byte, 1<<20)
			}
			for off := int64(0); off < size; {
				p := chunk[:min(int64(len(chunk)), size-off)]
				if n, err := s.From.ReadAt(p, off); n < len(p) {
					return fmt.Errorf("snapshot: section %s: reading %d bytes at %d: %v", s.Name, len(p), off, err)
				}
				bw.Write(p)
				crc = crc32.Update(crc, castagnoli, p)
				off += int64(len(p))
			}
		}
		binary.Write(bw, binary.LittleEndian, crc)
	}
	return bw.Flush()
}

// Read reads a whole snapshot and returns its sections (without "end").
func Read(r io.Reader) ([]Section, error) {
	br := bufio.NewReader(r)
	var head [12]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, fmt.Errorf("snapshot: %w: no header (%v)", ErrCorrupt, err)
	}
	if string(head[:8]) != magic {
		return nil, fmt.Errorf("snapshot: not an ftvm snapshot (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(head[8:]); v != Version {
		return nil, fmt.Errorf("snapshot: version %d, this ftvm reads version %d", v, Version)
	}
	var out []Section
	for i := 0; ; i++ {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("snapshot: section %d: %w: %s", i, ErrCorrupt, fmt.Sprintf(format, a...))
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n == 0 || n > maxName {
			return nil, fail("bad name length (%v)", err)
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return nil, fail("truncated name")
		}
		size, err := binary.ReadUvarint(br)
		if err != nil || size > MaxPayload {
			return nil, fail("%s: bad payload length", name)
		}
		data, err := readChunked(br, size)
		if err != nil {
			return nil, fail("%s: truncated payload (%d bytes expected)", name, size)
		}
		var crc uint32
		if err := binary.Read(br, binary.LittleEndian, &crc); err != nil {
			return nil, fail("%s: truncated checksum", name)
		}
		if got := crc32.Update(crc32.Checksum(name, castagnoli), castagnoli, data); got != crc {
			return nil, fail("%s: checksum mismatch", name)
		}
		if string(name) == "end" {
			return out, nil
		}
		out = append(out, Section{Name: string(name), Data: data})
	}
}

// readChunked reads n bytes, growing the buffer as data actually arrives.
func readChunked(r io.Reader, n uint64) ([]byte, error) {
	const chunk = 1 << 20
	buf := make([]byte, 0, min(n, chunk))
	for uint64(len(buf)) < n {
		k := min(n-uint64(len(buf)), chunk)
		start := len(buf)
		buf = append(buf, make([]byte, k)...)
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// Find returns the named section's data.
func Find(sections []Section, name string) ([]byte, bool) {
	for _, s := range sections {
		if s.Name == name {
			return s.Data, true
		}
	}
	return nil, false
}
