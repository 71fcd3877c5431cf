// Package kv is the key-value server that runs inside the default guest: a
// map behind the Redis protocol (RESP2), made durable by an append-only log
// on a raw block device. It lives outside guest/cmd so it can be tested on
// the host.
package kv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// Limits on what a client may send; they bound memory use per command.
const (
	MaxArgs    = 1 << 20
	MaxBulkLen = 64 << 20
	maxInline  = 64 << 10
)

// ProtocolError is a malformed request. The server replies with it and then
// closes the connection, as Redis does, since the stream cannot be resynced.
type ProtocolError struct{ msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.msg }

func protoErr(format string, a ...any) error {
	return &ProtocolError{fmt.Sprintf(format, a...)}
}

// ReadCommand reads one command: either a RESP array of bulk strings
// ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", what client libraries send) or an
// inline command ("GET k\r\n", what a human types into nc). An empty inline
// line yields an empty, non-nil slice which callers should ignore.
func ReadCommand(r *bufio.Reader) ([][]byte, error) {
	line, err := readLine(r, maxInline)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 || line[0] != '*' {
		return parseInline(line)
	}
	n, err := parseInt(line[1:])
	if err != nil || n > MaxArgs {
		return nil, protoErr("invalid multibulk length")
	}
	if n <= 0 {
		return [][]byte{}, nil // "*0" and "*-1" are valid and mean nothing
	}
	args := make([][]byte, 0, n)
	for range n {
		line, err := readLine(r, maxInline)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		if len(line) == 0 || line[0] != '$' {
			return nil, protoErr("expected '$', got '%s'", printable(line))
		}
		size, err := parseInt(line[1:])
		if err != nil || size < 0 || size > MaxBulkLen {
			return nil, protoErr("invalid bulk length")
		}
		// Read the payload and its CRLF in one go.
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if buf[size] != '\r' || buf[size+1] != '\n' {
			return nil, protoErr("bulk string not terminated by CRLF")
		}
		args = append(args, buf[:size:size])
	}
	return args, nil
}

// readLine returns a line without its terminator. It accepts a bare "\n"
// for inline commands typed by hand.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if len(line) > 0 && err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(line) > limit {
			return nil, protoErr("too big request line")
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func parseInline(line []byte) ([][]byte, error) {
	fields := bytes.Fields(line)
	args := make([][]byte, len(fields))
	for i, f := range fields {
		args[i] = bytes.Clone(f)
	}
	return args, nil
}

func parseInt(b []byte) (int, error) {
	return strconv.Atoi(string(b))
}

func printable(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	return strconv.Quote(string(b))
}

// Reply writers. Each appends one RESP2 value to w; errors surface when the
// caller flushes w.

// WriteSimple writes a status reply such as +OK.
func WriteSimple(w *bytes.Buffer, s string) {
	w.WriteByte('+')
	w.WriteString(s)
	w.WriteString("\r\n")
}

// WriteError writes an error reply; msg should start with an error code
// such as "ERR" or "WRONGTYPE".
func WriteError(w *bytes.Buffer, msg string) {
	w.WriteByte('-')
	w.WriteString(msg)
	w.WriteString("\r\n")
}

// WriteInt writes an integer reply.
func WriteInt(w *bytes.Buffer, n int64) {
	w.WriteByte(':')
	w.WriteString(strconv.FormatInt(n, 10))
	w.WriteString("\r\n")
}

// WriteBulk writes a bulk string, or the null bulk string if b is nil.
func WriteBulk(w *bytes.Buffer, b []byte) {
	if b == nil {
		w.WriteString("$-1\r\n")
		return
	}
	w.WriteByte('$')
	w.WriteString(strconv.Itoa(len(b)))
	w.WriteString("\r\n")
	w.Write(b)
	w.WriteString("\r\n")
}

// WriteArrayHeader starts an array of n elements; the caller writes them.
func WriteArrayHeader(w *bytes.Buffer, n int) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(n))
	w.WriteString("\r\n")
}
