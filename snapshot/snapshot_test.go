package snapshot

import (
	"bytes"
	"errors"
	"testing"
)

func sample() []byte {
	var b bytes.Buffer
	Write(&b, []Section{{Name: "hart", Data: []byte(`{"pc":1}`)}, {Name: "ram", Data: bytes.Repeat([]byte{7}, 3000)}})
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	s, err := Read(bytes.NewReader(sample()))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[0].Name != "hart" || len(s[1].Data) != 3000 {
		t.Fatalf("got %+v", s)
	}
}

// TestDamage flips each byte and truncates at each offset: the reader must
// refuse every damaged file and never panic.
func TestDamage(t *testing.T) {
	good := sample()
	for i := range good {
		b := append([]byte(nil), good...)
		b[i] ^= 0x20
		if _, err := Read(bytes.NewReader(b)); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
		if _, err := Read(bytes.NewReader(good[:i])); err == nil {
			t.Fatalf("truncation at %d accepted", i)
		}
	}
	_, err := Read(bytes.NewReader(good[:len(good)-3]))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v, want ErrCorrupt", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(sample())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, s); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(&out); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWriteFrom: a payload read from a ReaderAt while the snapshot is
// written gives the same bytes as one in memory (over several chunks), and
// a short read fails the write.
func TestWriteFrom(t *testing.T) {
	disk := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB: four chunks
	var inMemory, streamed bytes.Buffer
	if err := Write(&inMemory, []Section{{Name: "hart", Data: []byte("x")}, {Name: "disk", Data: disk}}); err != nil {
		t.Fatal(err)
	}
	if err := Write(&streamed, []Section{{Name: "hart", Data: []byte("x")}, {Name: "disk", From: bytes.NewReader(disk), Size: int64(len(disk))}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inMemory.Bytes(), streamed.Bytes()) {
		t.Fatal("a streamed section is written differently")
	}
	if err := Write(&streamed, []Section{{Name: "disk", From: bytes.NewReader(disk), Size: int64(len(disk)) + 1}}); err == nil {
		t.Fatal("a section whose reader ends early was written")
	}
}
