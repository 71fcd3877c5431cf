package eventlog

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Header describes the machine a log was recorded on. A replayer compares
// it with the machine it is about to start (Diff) before feeding it any
// record. It travels as JSON (see the package documentation): fields may be
// added within a major version as long as ignoring them cannot change what
// the guest computes.
type Header struct {
	Engine      string `json:"engine"` // e.g. "ftvm-riscv64"; required
	MemoryBytes uint64 `json:"memory_bytes"`
	Cmdline     string `json:"cmdline,omitempty"`
	// Images the run starts from, in the order the engine loads them.
	Images              []Image  `json:"images,omitempty"`
	InstructionsPerTick uint64   `json:"instructions_per_tick"`
	RNGSeed             HexBytes `json:"rng_seed,omitempty"`
	MAC                 MAC      `json:"mac,omitzero"` // zero: no NIC
	// StartInstret is the instruction count the run starts at: 0 for a
	// boot, the snapshot's count when resuming one. The first record's
	// delta is taken against it.
	StartInstret uint64 `json:"start_instret,omitempty"`
	// Params holds further settings as ordered key/value pairs, for
	// fields that do not deserve a name yet.
	Params []Param `json:"params,omitempty"`
}

// Image identifies one image by role and content hash.
type Image struct {
	Role   string `json:"role"` // "kernel", "initrd", "disk", "elf", "snapshot", ...
	SHA256 Hash   `json:"sha256"`
	Size   uint64 `json:"size,omitempty"` // bytes; informative (the hash decides)
}

// Param is a free-form header setting.
type Param struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Hash is a SHA-256 value; it is written in JSON as 64 hex digits.
type Hash [32]byte

func (h Hash) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, h[:]), nil }

func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("hash %q: want 64 hex digits", b)
	}
	_, err := hex.Decode(h[:], b)
	return err
}

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MAC is an Ethernet address, written in JSON as "52:54:00:12:34:56".
type MAC [6]byte

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *MAC) UnmarshalText(b []byte) error {
	// Exactly the form MarshalText writes, so that decoding is the
	// inverse of encoding.
	if len(b) != 17 {
		return fmt.Errorf("MAC %q: want xx:xx:xx:xx:xx:xx", b)
	}
	for i := range 6 {
		if i > 0 && b[3*i-1] != ':' {
			return fmt.Errorf("MAC %q: want xx:xx:xx:xx:xx:xx", b)
		}
		var v [1]byte
		if _, err := hex.Decode(v[:], b[3*i:3*i+2]); err != nil || strings.ToLower(string(b[3*i:3*i+2])) != string(b[3*i:3*i+2]) {
			return fmt.Errorf("MAC %q: want lower-case xx:xx:xx:xx:xx:xx", b)
		}
		m[i] = v[0]
	}
	return nil
}

// HexBytes is a byte string written in JSON as lower-case hex.
type HexBytes []byte

func (h HexBytes) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, h), nil }

func (h *HexBytes) UnmarshalText(b []byte) error {
	if strings.ToLower(string(b)) != string(b) {
		return fmt.Errorf("hex %q: want lower case", b)
	}
	v, err := hex.AppendDecode(nil, b)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// check reports a header the format cannot carry faithfully.
func (h *Header) check() error {
	if h.Engine == "" {
		return errors.New("engine name is empty")
	}
	// encoding/json replaces invalid UTF-8, which would make the header
	// read back differently from how it was written.
	strs := []string{h.Engine, h.Cmdline}
	for i, im := range h.Images {
		if im.Role == "" {
			return fmt.Errorf("image %d has no role", i)
		}
		strs = append(strs, im.Role)
	}
	for i, p := range h.Params {
		if p.Key == "" {
			return fmt.Errorf("param %d has an empty key", i)
		}
		strs = append(strs, p.Key, p.Value)
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%q is not valid UTF-8", s)
		}
	}
	return nil
}

// normalize makes empty lists nil, so that a decoded header compares equal
// to one that was built without them (omitempty drops both forms).
func (h *Header) normalize() {
	if len(h.Images) == 0 {
		h.Images = nil
	}
	if len(h.RNGSeed) == 0 {
		h.RNGSeed = nil
	}
	if len(h.Params) == 0 {
		h.Params = nil
	}
}

func (h *Header) marshal() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxHeader {
		return nil, fmt.Errorf("header JSON of %d bytes exceeds the %d-byte limit", len(b), MaxHeader)
	}
	return b, nil
}

func unmarshalHeader(b []byte) (Header, error) {
	var h Header
	if err := json.Unmarshal(b, &h); err != nil {
		return Header{}, err
	}
	h.normalize()
	return h, h.check()
}

// Diff compares the header of a log (h) with that of the machine a replay
// is about to run (want) and describes every difference, one per string;
// nil means they match. Every field counts, Params included: a replayer
// that wants to ignore some should clear them on both sides first.
func (h Header) Diff(want Header) []string {
	var out []string
	add := func(field string, log, mach any) {
		out = append(out, fmt.Sprintf("%s: log has %v, machine has %v", field, log, mach))
	}
	if h.Engine != want.Engine {
		add("engine", fmt.Sprintf("%q", h.Engine), fmt.Sprintf("%q", want.Engine))
	}
	if h.MemoryBytes != want.MemoryBytes {
		add("memory_bytes", h.MemoryBytes, want.MemoryBytes)
	}
	if h.Cmdline != want.Cmdline {
		add("cmdline", fmt.Sprintf("%q", h.Cmdline), fmt.Sprintf("%q", want.Cmdline))
	}
	if !slices.Equal(h.Images, want.Images) {
		add("images", imagesString(h.Images), imagesString(want.Images))
	}
	if h.InstructionsPerTick != want.InstructionsPerTick {
		add("instructions_per_tick", h.InstructionsPerTick, want.InstructionsPerTick)
	}
	if string(h.RNGSeed) != string(want.RNGSeed) {
		add("rng_seed", fmt.Sprintf("%x", h.RNGSeed), fmt.Sprintf("%x", []byte(want.RNGSeed)))
	}
	if h.MAC != want.MAC {
		add("mac", h.MAC, want.MAC)
	}
	if h.StartInstret != want.StartInstret {
		add("start_instret", h.StartInstret, want.StartInstret)
	}
	if !slices.Equal(h.Params, want.Params) {
		add("params", h.Params, want.Params)
	}
	return out
}

func imagesString(ims []Image) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, im := range ims {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%.12s", im.Role, im.SHA256)
	}
	b.WriteByte(']')
	return b.String()
}
