// Command mkinitramfs builds the default guest's initramfs: it cross-compiles
// guest/cmd/{init,kvserver,workload} for linux/riscv64 and writes them, with
// the device nodes and directories the guest needs, as an uncompressed newc
// cpio archive.
//
//	go run ./guest/cmd/mkinitramfs -o initramfs.cpio [-file /bin/x=path ...]
//
// -file adds a host file (or replaces one of the built binaries, which is
// then not built). The output is reproducible: the same binaries give the
// same bytes (fixed mtimes, owners and inode numbers; binaries built with
// -trimpath and no build id).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"ftvm/guest/cpio"
)

// programs maps archive paths to the packages built for them.
var programs = map[string]string{
	"/init":         "ftvm/guest/cmd/init",
	"/bin/kvserver": "ftvm/guest/cmd/kvserver",
	"/bin/workload": "ftvm/guest/cmd/workload",
}

type fileFlags map[string]string

func (f fileFlags) String() string { return fmt.Sprint(map[string]string(f)) }

func (f fileFlags) Set(v string) error {
	dst, src, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(dst, "/") || src == "" {
		return fmt.Errorf("want /path/in/archive=host/path, got %q", v)
	}
	f[dst] = src
	return nil
}

func main() {
	out := flag.String("o", "initramfs.cpio", "output file")
	files := fileFlags{}
	flag.Var(files, "file", "add `/dst=src` to the archive (repeatable; overrides a built program)")
	flag.Parse()
	if err := run(*out, files); err != nil {
		fmt.Fprintf(os.Stderr, "mkinitramfs: %v\n", err)
		os.Exit(1)
	}
}

func run(out string, files fileFlags) error {
	tmp, err := os.MkdirTemp("", "mkinitramfs")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var pkgs []string
	for dst, pkg := range programs {
		if _, ok := files[dst]; !ok {
			pkgs = append(pkgs, pkg)
			files[dst] = filepath.Join(tmp, filepath.Base(pkg))
		}
	}
	if len(pkgs) > 0 {
		sort.Strings(pkgs)
		if err := build(tmp, pkgs); err != nil {
			return err
		}
	}

	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, d := range []string{"/bin", "/dev", "/etc", "/proc", "/sys", "/tmp"} {
		perm := os.FileMode(0o755)
		if d == "/tmp" {
			perm = 0o777 | os.ModeSticky
		}
		w.Dir(d, perm)
	}
	// The kernel opens /dev/console for init's stdin/stdout/stderr before
	// init runs (so before devtmpfs is mounted): without this node every
	// line init prints is lost.
	w.CharDev("/dev/console", 0o600, 5, 1)
	w.CharDev("/dev/null", 0o666, 1, 3)
	w.File("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n"))

	dsts := make([]string, 0, len(files))
	for dst := range files {
		dsts = append(dsts, dst)
	}
	sort.Strings(dsts) // map order is random; the archive must not be
	for _, dst := range dsts {
		data, err := os.ReadFile(files[dst])
		if err != nil {
			return err
		}
		w.File(dst, 0o755, data)
		fmt.Fprintf(os.Stderr, "mkinitramfs: %-14s %8d bytes\n", dst, len(data))
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mkinitramfs: wrote %s (%d bytes)\n", out, buf.Len())
	return nil
}

// build cross-compiles pkgs into dir as static, stripped linux/riscv64
// binaries. GORISCV64 is pinned to the baseline profile (RV64GC): rva22u64
// would use Zba/Zbb unconditionally.
func build(dir string, pkgs []string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := append([]string{"build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=riscv64", "GORISCV64=rva20u64")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v", strings.Join(args, " "), err)
	}
	return nil
}
