package cpio

import (
	"bytes"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"ftvm/internal/testsupport"
)

func buildSample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []error{
		w.Dir("dev", 0o755),
		w.CharDev("/dev/console", 0o600, 5, 1),
		w.CharDev("dev/null", 0o666, 1, 3),
		w.Dir("bin", 0o755),
		w.Dir("tmp", 0o777|fs.ModeSticky),
		w.File("init", 0o755, []byte("#!hello\n")),
		w.File("bin/empty", 0o644, nil),
		w.File("bin/odd", 0o644, []byte("abcde")), // length not a multiple of 4
		w.Symlink("sbin", "bin"),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := buildSample(t)
	if len(data)%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", len(data))
	}
	type ent struct {
		name       string
		mode       uint32
		maj, min   uint32
		data, link string
	}
	want := []ent{
		{"dev", TypeDir | 0o755, 0, 0, "", ""},
		{"dev/console", TypeChar | 0o600, 5, 1, "", ""},
		{"dev/null", TypeChar | 0o666, 1, 3, "", ""},
		{"bin", TypeDir | 0o755, 0, 0, "", ""},
		{"tmp", TypeDir | 0o1777, 0, 0, "", ""},
		{"init", TypeFile | 0o755, 0, 0, "#!hello\n", ""},
		{"bin/empty", TypeFile | 0o644, 0, 0, "", ""},
		{"bin/odd", TypeFile | 0o644, 0, 0, "abcde", ""},
		{"sbin", TypeSymlink | 0o777, 0, 0, "bin", "bin"},
	}
	r := NewReader(bytes.NewReader(data))
	for i, w := range want {
		h, d, err := r.Next()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		got := ent{h.Name, h.Mode, h.RdevMaj, h.RdevMin, string(d), h.Linkname}
		if got != w {
			t.Errorf("entry %d: got %+v, want %+v", i, got, w)
		}
		if h.Ino != uint32(i+1) {
			t.Errorf("entry %d: ino %d, want %d", i, h.Ino, i+1)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Errorf("after last entry: got %v, want io.EOF", err)
	}
}

func TestReproducible(t *testing.T) {
	if !bytes.Equal(buildSample(t), buildSample(t)) {
		t.Fatal("same inputs gave different archives")
	}
}

func TestBadName(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.File("/", 0o644, nil); err == nil {
		t.Fatal("empty name accepted")
	}
	if err := w.Close(); err == nil {
		t.Fatal("error not sticky")
	}
}

// TestSystemCpio cross-checks the format with GNU cpio when it is installed.
func TestSystemCpio(t *testing.T) {
	path := testsupport.Tool(t, "cpio", "cpio")
	cmd := exec.Command(path, "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(buildSample(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	want := []string{"dev", "dev/console", "dev/null", "bin", "tmp", "init", "bin/empty", "bin/odd", "sbin"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cpio -it listed %q, want %q", got, want)
	}
}
