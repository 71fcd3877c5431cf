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
// the guest's service (the key-value server, or a Debian service) when it
// exits. It is the only caller of wait4, so exec.Cmd.Wait is never used:
// it would race with the reaper.
type supervisor struct {
	mu       sync.Mutex
	name     string           // what the service is called in messages
	command  func() *exec.Cmd // a new command for each start
	grace    time.Duration    // how long stop waits after SIGTERM (0: no SIGTERM)
	pid      int
	stopping bool
	exited   chan struct{} // closed when the service exits (replaced at each start)
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
		ours := pid == s.pid && pid != 0
		restart := ours && !s.stopping
		if ours {
			s.pid = 0
			close(s.exited)
		}
		name := s.name
		s.mu.Unlock()
		if restart {
			logf("%s (pid %d) exited: %s; restarting in 1s", name, pid, describe(ws))
			time.AfterFunc(time.Second, s.start)
		} else if ours {
			logf("%s (pid %d) exited: %s", name, pid, describe(ws))
		}
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit status " + itoa(ws.ExitStatus())
}

// run sets the service and starts it. grace is how long a power-off
// waits for it to stop after SIGTERM (0: it is not asked to stop).
func (s *supervisor) run(name string, grace time.Duration, command func() *exec.Cmd) {
	s.mu.Lock()
	s.name, s.grace, s.command = name, grace, command
	s.mu.Unlock()
	s.start()
}

// startKV runs /bin/kvserver with its output on the console. Its log is
// flushed before every reply, so a power-off need not stop it.
func (s *supervisor) startKV() {
	s.run("kvserver", 0, func() *exec.Cmd { return exec.Command("/bin/kvserver") })
}

// start runs the service with its output on the console (unless its
// command says otherwise).
func (s *supervisor) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || s.pid != 0 || s.command == nil {
		return
	}
	cmd := s.command()
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		logf("start %s: %v", s.name, err)
		return
	}
	s.pid = cmd.Process.Pid
	s.exited = make(chan struct{})
	logf("%s started (pid %d)", s.name, s.pid)
}

// stop prevents restarts (before power-off or reboot) and, for a service
// run with a grace period, asks it to stop with SIGTERM and waits up to
// that long for it to exit, so that a database shuts down cleanly rather
// than recovering at the next boot.
func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopping = true
	pid, exited, timeout := s.pid, s.exited, s.grace
	s.mu.Unlock()
	if pid == 0 || timeout == 0 {
		return
	}
	unix.Kill(pid, unix.SIGTERM)
	select {
	case <-exited:
	case <-time.After(timeout):
		logf("%s did not stop within %s", s.name, timeout)
	}
}
