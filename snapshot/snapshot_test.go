package snapshot

import (
	"bytes"
	"errors"
	"testing"
)

func sample() []byte {
	var b bytes.Buffer
	Write(&b, []Section{{"hart", []byte(`{"pc":1}`)}, {"ram", bytes.Repeat([]byte{7}, 3000)}})
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
