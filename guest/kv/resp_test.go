package kv

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadCommand(t *testing.T) {
	in := "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n" +
		"PING\r\n" +
		"set  a   b\n" + // inline, bare LF, repeated spaces
		"*1\r\n$0\r\n\r\n" + // empty bulk string
		"\r\n" + // empty inline line
		"*0\r\n" +
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n" // binary-safe CRLF inside
	want := [][]string{{"GET", "key"}, {"PING"}, {"set", "a", "b"}, {""}, {}, {}, {"SET", "k", "a\r\nb"}}
	r := bufio.NewReader(strings.NewReader(in))
	for i, w := range want {
		got, err := ReadCommand(r)
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if len(got) != len(w) {
			t.Fatalf("command %d: got %q, want %q", i, got, w)
		}
		for j := range w {
			if string(got[j]) != w[j] {
				t.Errorf("command %d arg %d: got %q, want %q", i, j, got[j], w[j])
			}
		}
	}
	if _, err := ReadCommand(r); err != io.EOF {
		t.Errorf("at end: got %v, want io.EOF", err)
	}
}

func TestReadCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		in    string
		proto bool // want a ProtocolError (else a truncation error)
	}{
		{"*x\r\n", true},
		{"*1\r\n+OK\r\n", true},
		{"*1\r\n$-5\r\n", true},
		{"*1\r\n$3\r\nabcd\r\n", true},
		{"*99999999\r\n", true},
		{"*2\r\n$3\r\nGET\r\n", false},
		{"*1\r\n$10\r\nabc", false},
		{"PING", false},
	} {
		_, err := ReadCommand(bufio.NewReader(strings.NewReader(tc.in)))
		var pe *ProtocolError
		if tc.proto && !errors.As(err, &pe) {
			t.Errorf("%q: got %v, want a protocol error", tc.in, err)
		}
		if !tc.proto && err != io.ErrUnexpectedEOF {
			t.Errorf("%q: got %v, want io.ErrUnexpectedEOF", tc.in, err)
		}
	}
}

func TestWriters(t *testing.T) {
	var b bytes.Buffer
	WriteSimple(&b, "OK")
	WriteError(&b, "ERR x")
	WriteInt(&b, -42)
	WriteBulk(&b, []byte("hi"))
	WriteBulk(&b, nil)
	WriteBulk(&b, []byte{})
	WriteArrayHeader(&b, 2)
	want := "+OK\r\n-ERR x\r\n:-42\r\n$2\r\nhi\r\n$-1\r\n$0\r\n\r\n*2\r\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
