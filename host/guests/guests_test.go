package guests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	g, err := Lookup("")
	if err != nil || g.Name != Default || g.Debian() {
		t.Fatalf("default guest: %+v, %v", g, err)
	}
	for _, c := range []struct {
		name, cmdline string
		port          int
	}{{"redis", "console=ttyS0 ftvm.service=redis", 6379}, {"postgres", "console=ttyS0 ftvm.service=postgres", 5432}, {"nginx", "console=ttyS0 ftvm.service=nginx", 80}} {
		g, err := Lookup(c.name)
		if err != nil || !g.Debian() || g.Port != c.port || g.Cmdline("console=ttyS0") != c.cmdline {
			t.Errorf("%s: %+v, %v, cmdline %q", c.name, g, err, g.Cmdline("console=ttyS0"))
		}
	}
	if _, err := Lookup("mysql"); err == nil || !strings.Contains(err.Error(), "kv, redis, postgres, nginx") {
		t.Errorf("unknown guest: %v", err)
	}
}

// TestDataDisk: a missing data disk is made from the template, byte for
// byte and as sparse; an existing one is kept as it is.
func TestDataDisk(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("FTVM_CACHE", cache)
	g, _ := Lookup("redis")
	if err := g.Check(); err == nil {
		t.Fatal("Check passed with nothing built")
	}
	if _, _, err := g.DataDisk(""); err == nil || !strings.Contains(err.Error(), "build-rootfs.sh") {
		t.Fatalf("no template: %v", err)
	}
	tpl := make([]byte, 8<<20)
	copy(tpl[4096:], "superblock")
	copy(tpl[5<<20:], "a file")
	if err := os.MkdirAll(filepath.Dir(DataTemplate()), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(DataTemplate(), tpl, 0o644); err != nil {
		t.Fatal(err)
	}
	path, made, err := g.DataDisk("")
	if err != nil || !made || path != filepath.Join(cache, "disks", "redis.img") {
		t.Fatalf("DataDisk: %s, %v, %v", path, made, err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, tpl) {
		t.Fatalf("the copy differs from the template (%v)", err)
	}
	os.WriteFile(path, []byte("kept"), 0o644)
	if _, made, err := g.DataDisk(""); err != nil || made {
		t.Fatalf("an existing disk was remade: %v %v", made, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "kept" {
		t.Fatal("an existing disk was overwritten")
	}
	own := filepath.Join(t.TempDir(), "mine.img")
	if p, made, err := g.DataDisk(own); err != nil || !made || p != own {
		t.Fatalf("named disk: %s %v %v", p, made, err)
	}
}

// TestLock: a data disk locked by this process cannot be locked again (as
// another ftvm process would try to).
func TestLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.img")
	os.WriteFile(p, make([]byte, 4096), 0o644)
	if err := Lock(p); err != nil {
		t.Fatal(err)
	}
	if err := Lock(p); err == nil || !strings.Contains(err.Error(), "in use by another ftvm") {
		t.Fatalf("second lock: %v", err)
	}
}
