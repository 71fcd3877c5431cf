// Package eventlog is the on-disk and on-the-wire format of an ftvm
// record/replay log: a header describing the machine, then one frame per
// input delivered to it (and per state digest), each tagged with the
// instruction count at which it took effect. A recorder appends records
// with a Writer; a replayer (or a backup receiving the log over TCP from a
// primary) reads them back with a Reader and must reproduce the run exactly.
//
// The package knows nothing about the engine that runs the guest: inputs are
// opaque bytes and numbers, and the engine is named by a string in the
// header. It uses no seeking, so it works on files, pipes and connections.
//
// # Format, version 1
//
// This comment is the specification. All integers marked "uvarint" are
// unsigned LEB128 (encoding/binary's Uvarint) in their shortest form: at
// most 10 bytes, the value fits in 64 bits, and a multi-byte encoding does
// not end in a 0x00 byte. Rejecting longer forms makes the encoding
// canonical: a given log has exactly one byte representation, so golden
// files and the "re-encodes to the same bytes" fuzz property are meaningful.
// Fixed-width integers are little-endian. CRC-32C is the Castagnoli CRC
// (hash/crc32.Castagnoli), chosen because it is hardware-accelerated on
// amd64 and arm64 and detects every burst error up to 32 bits.
//
//	Log    = Header Frame*                       (a complete log ends with an End frame)
//
//	Header:
//	  0   12 bytes  magic 89 46 54 56 4D 4C 4F 47 0D 0A 1A 0A  ("\x89FTVMLOG\r\n\x1a\n")
//	  12   1 byte   format version: 1
//	  13   uvarint  n, the length of the JSON text, 1..65536
//	       1 byte   head check: CRC-8 (as in frames, below) of the bytes before it
//	       n bytes  a JSON object (UTF-8), the machine description (type Header)
//	       4 bytes  CRC-32C of every header byte before it (magic included)
//
// The header's CRC-32C is the first value of the running CRC (below). The
// JSON object has these members (Go's encoding/json of type Header; hashes
// and byte strings are lower-case hex, the MAC is "xx:xx:xx:xx:xx:xx"):
//
//	engine                 string, required, e.g. "ftvm-riscv64"
//	memory_bytes           number
//	cmdline                string, omitted if empty
//	images                 [{"role": "kernel"|"initrd"|"disk"|"elf"|"snapshot"|...,
//	                         "sha256": hex, "size": number (omitted if 0)}], omitted if none
//	instructions_per_tick  number
//	rng_seed               hex, omitted if empty
//	mac                    string, omitted if all zero (no NIC)
//	start_instret          number, omitted if 0
//	params                 [{"key": string, "value": string}], omitted if none
//
// Readers ignore members they do not know.
//
//	Frame:
//	       1 byte   kind
//	       uvarint  delta: instruction count of this frame minus that of the
//	                previous frame (for the first frame, minus the header's
//	                start_instret)
//	       uvarint  n, the payload length, 0..1048576
//	       1 byte   head check: CRC-8 (polynomial 0x07, initial value 0, final
//	                XOR 0x55; ATM's header error control) of the kind, delta
//	                and length bytes
//	       n bytes  payload (by kind, below)
//	       4 bytes  running CRC-32C: the CRC-32C of the header (without its
//	                CRC field) followed by every frame so far (without their
//	                CRC fields), up to and including this frame's payload
//
// Frames are numbered from 1 in the order they appear; errors call the header
// frame 0 and give the byte offset at which the frame starts.
//
// Payloads by kind:
//
//	1 ConsoleInput  the bytes typed on the console
//	2 NetReceive    the Ethernet frame received
//	3 AdvanceTime   uvarint of zigzag(d) (2d for d >= 0, -2d-1 for d < 0),
//	                d being the 64-bit wrapping difference between this
//	                record's mtime and the previous AdvanceTime record's (0
//	                before the first), taken as signed
//	4 Digest        Digest (below)
//	5 End           uvarint r (0..1024), r bytes of stop reason, then Digest
//	0x40..0x7f      ancillary kinds: opaque bytes a reader passes through
//	                (Record.Data) without interpreting them; this package
//	                defines three (OutputsAt, SnapshotAt, ReachedAt; decode
//	                the first two with DecodeOutputs, DecodeSnapshot):
//	0x40 Outputs    running output hashes: uvarint c, then c times: uvarint
//	                m (1..255), m bytes of stream name ("console", "net",
//	                "disk"), uvarint count, 32 bytes of SHA-256 (type
//	                OutputSum)
//	0x41 Snapshot   a snapshot written at this count: 32 bytes of the
//	                file's SHA-256, uvarint m (1..255), m bytes of file name
//	0x42 Reached    the run got this far with no input since the record
//	                before (empty payload): the point up to which a log cut
//	                short can be replayed
//	anything else   unknown: the reader stops with ErrUnknownKind
//
//	Digest:
//	       32 bytes overall state hash
//	       uvarint  c, the number of components
//	       c times: uvarint m (1..255), m bytes of name (e.g. "cpu", "ram"),
//	                32 bytes of that component's hash
//
// A payload must be consumed exactly: trailing bytes are corruption.
//
// # Why it looks like this
//
// Per-record overhead. A frame costs 1 (kind) + 1..4 (delta; up to 2^28
// instructions, a few guest seconds, fits in 4 bytes) + 1..3 (length) + 1
// (head check) + 4 (CRC) bytes: 8 bytes for two inputs at the same count,
// 10 to 11 for typical spacing. AdvanceTime payloads are usually 2 to 4
// bytes thanks to the time delta. The benchmarks measure it
// (BenchmarkEncode reports bytes/record). Records are not batched under one
// checksum because the recorder must be able to stop, and the backup to
// take over, after any single input.
//
// Delta-encoded instruction counts. Inputs arrive close together compared
// with 2^64, so deltas are short; and since a delta is unsigned, counts can
// only move forward. A delta that would overflow 64 bits is how a decrease
// would show, and is reported as corruption.
//
// Head check. The CRC-32C at the end of the frame can only be checked after
// the payload has been read, and the payload length comes first. Without a
// check on the length, a corrupted length would make a reader on a file
// report truncation instead of corruption, and a backup reading a live
// connection wait for up to a megabyte of data that is not coming. One byte
// of CRC-8 is checked before the length is trusted: it catches every error
// burst of up to 8 bits that leaves the varints' shape alone, and 255 in
// 256 of those that do not (the CRC-32C then catches the rest, though
// possibly reported as truncation).
//
// Running CRC. Each frame's CRC covers everything before it, so a frame
// that is dropped, duplicated, reordered or spliced in from another log
// fails the check although each frame is intact on its own. It costs
// nothing extra, and a log is only ever read from its start.
//
// Bounded lengths. The header JSON is at most 64 KiB and a payload at most
// 1 MiB (larger than any Ethernet frame with offloads); a reader grows its
// buffer as data actually arrives, so a hostile length costs at most
// 64 KiB plus twice what the peer really sends. Component counts are checked against the
// bytes that remain before anything is allocated.
//
// JSON header. The header is written once, is small, and changes more often
// than anything else; JSON lets a newer writer add fields that an older
// reader ignores. A field that changes what the guest computes must not be
// added that way: it needs a new major version, which old readers reject
// (ErrVersion). Digest records catch a mismatch that slips through anyway.
//
// Kinds. A reader that skipped an input it does not understand would
// replay a different run, so an unknown kind is an error that names the
// kind and the frame. Kinds 0x40..0x7f are reserved for annotations that
// do not affect the guest (host timestamps, output markers): a newer writer
// may add them without breaking older readers, which return them raw.
// Kind 0 is invalid so that a run of zero bytes is never a valid frame.
//
// End and truncation. A complete log ends with an End frame; Next returns
// io.EOF only after it and reads nothing beyond it, so a connection can stay
// open. A log cut anywhere (a crashed primary, a full disk) yields every
// frame that is complete and then an error matching ErrTruncated, which
// tells the replayer that it has every input up to there but not how the
// run ended (a backup goes live at that point). Failed checks are reported
// as ErrCorrupt (or ErrVersion, ErrUnknownKind), not as ErrTruncated, so
// that damage is not mistaken for a crash (up to the 1-in-256 head check
// case above). Errors are *FormatError values giving the frame and the
// byte offset where it starts.
package eventlog
