package main

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// supervisor reaps every child (PID 1 inherits all orphans) and restarts
// the key-value server when it exits. It is the only caller of wait4, so
// exec.Cmd.Wait is never used: it would race with the reaper.
type supervisor struct {
	mu       sync.Mutex
	kvPid    int
	stopping bool
}

func startSupervisor() *supervisor {
	s := &supervisor{}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD)
	go func() {
		for range sigs {
			s.reap()
		}
	}()
	return s
}

// reap collects every exited child; SIGCHLDs coalesce, so loop until none.
func (s *supervisor) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		s.mu.Lock()
		restart := pid == s.kvPid && !s.stopping
		if pid == s.kvPid {
			s.kvPid = 0
		}
		s.mu.Unlock()
		if restart {
			logf("kvserver (pid %d) exited: %s; restarting in 1s", pid, describe(ws))
			time.AfterFunc(time.Second, s.startKV)
		}
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit status " + itoa(ws.ExitStatus())
}

// startKV runs /bin/kvserver with its output on the console.
func (s *supervisor) startKV() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || s.kvPid != 0 {
		return
	}
	cmd := exec.Command("/bin/kvserver")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		logf("start kvserver: %v", err)
		return
	}
	s.kvPid = cmd.Process.Pid
	logf("kvserver started (pid %d)", s.kvPid)
}

// stop prevents restarts (before power-off or reboot).
func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
}
