package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"ftvm/host/netdev"
	"ftvm/host/vswitch"
	"ftvm/monitor"
)

// forwardFlags collects repeated -forward flags.
type forwardFlags []vswitch.Forward

func (f *forwardFlags) String() string {
	var s []string
	for _, fw := range *f {
		s = append(s, fw.String())
	}
	return strings.Join(s, ",")
}

func (f *forwardFlags) Set(v string) error {
	fw, err := vswitch.ParseForward(v)
	if err != nil {
		return err
	}
	*f = append(*f, fw)
	return nil
}

func cmdSwitch(args []string) error {
	fs := flag.NewFlagSet("switch", flag.ContinueOnError)
	listen := fs.String("listen", vswitch.DefaultListen, "UDP `address` the guests' ports connect to (ftvm run -net switch:ADDRESS)")
	var fwds forwardFlags
	fs.Var(&fwds, "forward", "forward host TCP connections to a guest: `HOSTADDR=GUESTIP:PORT`, e.g. 127.0.0.1:16379=10.0.2.15:6379 (repeatable)")
	ip := fs.String("ip", vswitch.DefaultIP.String(), "the switch's own `address/prefix` on the virtual LAN")
	mac := fs.String("mac", net.HardwareAddr(vswitch.DefaultMAC[:]).String(), "the switch interface's MAC address")
	portTimeout := fs.Duration("port-timeout", vswitch.DefaultPortTimeout, "forget a port silent for this long")
	guestTimeout := fs.Duration("guest-timeout", vswitch.DefaultGuestTimeout, "give up a forwarded connection after the guest is silent this long")
	maxPorts := fs.Int("max-ports", vswitch.DefaultMaxPorts, "the most ports (replica processes) the switch serves at once")
	statsEvery := fs.Duration("stats-every", 0, "log the counters at this interval (0: only at exit)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	httpAddr := fs.String("http", "", "serve Prometheus /metrics (the switch's counters) on `addr`")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ftvm switch [flags]\n\nRuns a virtual Ethernet switch for guests started with -net switch:ADDRESS,\nwith an interface of its own on the LAN and TCP port forwards to the guests.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("switch takes no arguments (got %q)", fs.Args())
	}
	cfg := vswitch.Config{Listen: *listen, Forwards: fwds, PortTimeout: *portTimeout, GuestTimeout: *guestTimeout, MaxPorts: *maxPorts}
	var err error
	if cfg.IP, err = netip.ParsePrefix(*ip); err != nil {
		return fmt.Errorf("-ip %q: want ADDRESS/PREFIX, e.g. 10.0.2.2/24", *ip)
	}
	hw, err := net.ParseMAC(*mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("-mac %q: not a 48-bit MAC address", *mac)
	}
	copy(cfg.MAC[:], hw)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", *level)
	}
	if *portTimeout <= 0 || *guestTimeout <= 0 || *maxPorts <= 0 || *statsEvery < 0 {
		return errors.New("-port-timeout, -guest-timeout and -max-ports must be positive, -stats-every not negative")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	cfg.Logger = log
	sw, err := vswitch.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for i, a := range sw.ForwardAddrs() {
		log.Info("forwarding", "host", a.String(), "guest", cfg.Forwards[i].Guest.String())
	}
	c := sw.Config()
	log.Info("switch ready", "listen", sw.Addr().String(), "ip", c.IP.String(),
		"mac", net.HardwareAddr(c.MAC[:]).String(), "forwards", len(c.Forwards))
	if *httpAddr != "" {
		hl, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("-http: %w", err)
		}
		srv := &http.Server{Handler: monitor.Switch(sw), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(hl)
		defer srv.Close()
	}
	if *statsEvery > 0 {
		go func() {
			t := time.NewTicker(*statsEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					logStats(log, sw.Stats())
				}
			}
		}()
	}
	err = sw.Serve(ctx)
	logStats(log, sw.Stats())
	if err != nil {
		return err
	}
	log.Info("switch stopped")
	return nil
}

func logStats(log *slog.Logger, st vswitch.Stats) {
	log.Info("stats", "ports", len(st.Ports)-1, "macs", st.MACs, "mac_moves", st.MACMoves,
		"junk", st.Junk, "invalid", st.Invalid, "ports_expired", st.Expired,
		"tcp_retransmits", st.TCPRetransmits, "tcp_timeouts", st.TCPTimeouts)
	for _, p := range st.Ports {
		log.Info("port stats", "port", p.Name, "frames_in", p.FramesIn, "frames_out", p.FramesOut,
			"dropped", p.Dropped, "junk", p.Junk, "macs", strings.Join(p.MACs, ","))
	}
	for _, f := range st.Forwards {
		log.Info("forward stats", "host", f.Listen, "guest", f.Forward.Guest.String(), "accepted", f.Accepted,
			"active", f.Active, "dial_errors", f.DialErrors, "to_guest", f.ToGuest, "from_guest", f.FromGuest)
	}
}

// announce tells the network that mac is now behind nb, and the user.
func announce(nb netdev.Backend, mac [6]byte) {
	netdev.AnnounceSelf(nb, mac)
	fmt.Fprintf(os.Stderr, "ftvm: announced %v on the network\r\n", net.HardwareAddr(mac[:]))
}
