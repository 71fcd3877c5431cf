package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The Debian guests (ftvm.service=redis|postgres|nginx): the kernel and
// this init are the default guest's, and two disks hold Debian
// (scripts/build-rootfs.sh): a read-only root with the services installed,
// and a writable data disk holding what they write. Init mounts both under
// newRoot and runs the service chrooted there, unmodified, with its data on
// the data disk and its output on the console.
const newRoot = "/debian"

// service describes how to run one Debian service in the root.
type service struct {
	user string // the account it runs as ("" for root, which drops privileges itself)
	args []string
	// runDirs are created under /run, owned by the service's user (the
	// sockets and pid files systemd's units would create).
	runDirs []string
	grace   time.Duration // for a clean shutdown at power-off
	// sysctls are set before it starts (path under /proc/sys, value).
	sysctls [][2]string
}

// services: Debian's own binaries and configuration files. Redis is told
// on its command line to listen on every address, in the foreground, with
// the log on the console and full durability (every write in the
// append-only file, fsync'd before the reply).
var services = map[string]service{
	"redis": {
		user: "redis",
		args: []string{"/usr/bin/redis-server", "/etc/redis/redis.conf",
			"--daemonize", "no", "--supervised", "no", "--bind", "0.0.0.0", "--protected-mode", "no",
			"--logfile", "", "--dir", "/var/lib/redis",
			"--appendonly", "yes", "--appendfsync", "always"},
		runDirs: []string{"redis"},
		grace:   20 * time.Second,
		// What Redis asks for at start: a background save forks.
		sysctls: [][2]string{{"vm/overcommit_memory", "1"}},
	},
	"postgres": {
		user: "postgres",
		// The cluster Debian's postgresql-common created at build time
		// (VERSION is filled in from the root); its configuration lets
		// the guest LAN in (build-rootfs.sh).
		args: []string{"/usr/lib/postgresql/VERSION/bin/postgres",
			"-D", "/var/lib/postgresql/VERSION/main",
			"-c", "config_file=/etc/postgresql/VERSION/main/postgresql.conf",
			// The WAL may grow to max_wal_size between checkpoints (1 GB
			// by default); the data disk is 512 MiB. Durability is
			// unchanged (fsync and synchronous_commit stay on).
			"-c", "max_wal_size=256MB"},
		runDirs: []string{"postgresql"},
		grace:   30 * time.Second,
	},
	"nginx": {
		// nginx starts as root and runs its workers as www-data.
		args:  []string{"/usr/sbin/nginx", "-g", "daemon off;"},
		grace: 10 * time.Second,
	},
}

// startService prepares the Debian root and starts the named service.
func startService(sup *supervisor, name string) error {
	svc, ok := services[name]
	if !ok {
		return fmt.Errorf("unknown service %q (want redis, postgres or nginx)", name)
	}
	if err := mountDebian(); err != nil {
		return err
	}
	if strings.Contains(strings.Join(svc.args, " "), "VERSION") {
		v, err := postgresVersion()
		if err != nil {
			return err
		}
		for i := range svc.args {
			svc.args[i] = strings.ReplaceAll(svc.args[i], "VERSION", v)
		}
	}
	cred := &syscall.Credential{}
	uid, gid := 0, 0
	if svc.user != "" {
		var groups []uint32
		var err error
		if uid, gid, groups, err = lookupUser(newRoot, svc.user); err != nil {
			return err
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}
	}
	for _, kv := range svc.sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
			logf("sysctl %s=%s: %v", kv[0], kv[1], err)
		}
	}
	// Descriptors, as Debian's units allow (LimitNOFILE=65535 for Redis):
	// the kernel's default of 4096 would cap a server's clients.
	lim := unix.Rlimit{Cur: 65536, Max: 65536}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		logf("raise the descriptor limit: %v", err)
	}
	for _, d := range svc.runDirs {
		p := filepath.Join(newRoot, "run", d)
		if err := os.MkdirAll(p, 0o2775); err != nil {
			return err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	sup.run(name, svc.grace, func() *exec.Cmd {
		cmd := exec.Command(svc.args[0], svc.args[1:]...)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8",
			"HOME=/", "TZ=Etc/UTC"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: newRoot, Credential: cred, Setsid: true}
		return cmd
	})
	return nil
}

// mountDebian mounts the read-only root disk on newRoot, the data disk on
// newRoot/data, binds the data disk's directories (listed in its
// .ftvm-binds) over their places in the root, and mounts what a Debian
// system expects: /proc, /sys, /dev, and tmpfs on /run, /tmp, /var/tmp
// and /dev/shm.
func mountDebian() error {
	root, data, err := findDisks()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(root, newRoot, "ext4", unix.MS_RDONLY|unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount the root %s: %w", root, err)
	}
	dataDir := filepath.Join(newRoot, "data")
	if err := unix.Mount(data, dataDir, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount the data disk %s: %w", data, err)
	}
	binds, err := os.ReadFile(filepath.Join(dataDir, ".ftvm-binds"))
	if err != nil {
		return fmt.Errorf("the data disk: %w", err)
	}
	for _, d := range strings.Fields(string(binds)) {
		if strings.Contains(d, "..") {
			return fmt.Errorf("the data disk: bad directory %q", d)
		}
		src, dst := filepath.Join(dataDir, d), filepath.Join(newRoot, d)
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", src, dst, err)
		}
	}
	for _, m := range []struct{ src, dir, fstype, data string }{
		{"proc", "proc", "proc", ""},
		{"sysfs", "sys", "sysfs", ""},
		{"devtmpfs", "dev", "devtmpfs", ""},
		{"tmpfs", "dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "run", "tmpfs", "mode=755"},
		{"tmpfs", "tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "var/tmp", "tmpfs", "mode=1777"},
	} {
		dir := filepath.Join(newRoot, m.dir)
		os.MkdirAll(dir, 0o755) // only where the root has no such directory (dev/shm)
		if err := unix.Mount(m.src, dir, m.fstype, unix.MS_NOSUID, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, dir, err)
		}
	}
	// /run/lock and /var/run, as Debian's boot would have them.
	os.MkdirAll(filepath.Join(newRoot, "run/lock"), 0o1777)
	logf("Debian root %s (read-only) and data disk %s mounted on %s", root, data, newRoot)
	return nil
}

// findDisks tells the two virtio disks apart: the root is the read-only one.
func findDisks() (root, data string, err error) {
	names, _ := filepath.Glob("/sys/block/vd*")
	sort.Strings(names)
	for _, n := range names {
		ro, err := os.ReadFile(filepath.Join(n, "ro"))
		if err != nil {
			continue
		}
		dev := "/dev/" + filepath.Base(n)
		if strings.TrimSpace(string(ro)) == "1" {
			if root == "" {
				root = dev
			}
		} else if data == "" {
			data = dev
		}
	}
	if root == "" || data == "" {
		return "", "", fmt.Errorf("want a read-only root disk and a data disk, found root %q, data %q among %v", root, data, names)
	}
	return root, data, nil
}

// postgresVersion is the major version of the PostgreSQL server installed
// in the root (the one directory under /usr/lib/postgresql).
func postgresVersion() (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(newRoot, "usr/lib/postgresql/*/bin/postgres"))
	if len(dirs) != 1 {
		return "", fmt.Errorf("want one PostgreSQL server in the root, found %d", len(dirs))
	}
	return filepath.Base(filepath.Dir(filepath.Dir(dirs[0]))), nil
}

// lookupUser reads the user's ids and supplementary groups from the
// root's /etc/passwd and /etc/group.
func lookupUser(root, name string) (uid, gid int, groups []uint32, err error) {
	found := false
	err = eachLine(filepath.Join(root, "etc/passwd"), func(f []string) {
		if len(f) >= 4 && f[0] == name && !found {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			found = true
		}
	})
	if err != nil {
		return 0, 0, nil, err
	}
	if !found {
		return 0, 0, nil, fmt.Errorf("no user %q in the root's /etc/passwd", name)
	}
	err = eachLine(filepath.Join(root, "etc/group"), func(f []string) {
		if len(f) < 4 {
			return
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				if g, err := strconv.Atoi(f[2]); err == nil {
					groups = append(groups, uint32(g))
				}
			}
		}
	})
	return uid, gid, groups, err
}

// eachLine calls fn with the colon-separated fields of each line of path.
func eachLine(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(strings.Split(sc.Text(), ":"))
	}
	if err := sc.Err(); err != nil {
		return errors.Join(fmt.Errorf("%s", path), err)
	}
	return nil
}
