// Package monitor is how replicas and the virtual switch are watched over
// HTTP: a replica's /status (JSON) and /metrics (Prometheus), the switch's
// /metrics, and the client side that reads /status (ftvm status, the demo,
// the benchmarks and the tests).
package monitor

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ftvm/host/vswitch"
	"ftvm/replication"
)

// Replica serves a replica's status: /status as JSON (what FetchStatus
// reads) and /metrics for Prometheus, rendered from the status at scrape
// time.
func Replica(rep *replication.Replica) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(replicaCollector{rep})
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rep.Status())
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

var (
	descInstret   = prometheus.NewDesc("ftvm_instructions", "Guest instructions executed (replayed, on a backup).", nil, nil)
	descLagInsns  = prometheus.NewDesc("ftvm_replication_lag_instructions", "Instructions the backup trails the primary by.", nil, nil)
	descLagBytes  = prometheus.NewDesc("ftvm_replication_lag_bytes", "Log bytes sent and not yet acknowledged.", nil, nil)
	descLogBytes  = prometheus.NewDesc("ftvm_replication_log_bytes", "Log bytes sent (primary) or received (backup) on the current link.", nil, nil)
	descLogFrames = prometheus.NewDesc("ftvm_replication_log_frames", "Log records on the current link.", nil, nil)
	descHeld      = prometheus.NewDesc("ftvm_replication_held_outputs", "Outputs waiting for the backup's acknowledgement.", nil, nil)
	descHeartbeat = prometheus.NewDesc("ftvm_replication_heartbeat_age_seconds", "Time since the peer was last heard from.", nil, nil)
	descFailovers = prometheus.NewDesc("ftvm_replication_failovers", "Times this replica went live after its primary died.", nil, nil)
	descGen       = prometheus.NewDesc("ftvm_replication_view_generation", "Generation of the pair's view at the arbiter.", nil, nil)
	descRole      = prometheus.NewDesc("ftvm_replication_role", "1 for the replica's current role.", []string{"role"}, nil)
)

// replicaCollector turns a replica's status into metrics at scrape time.
type replicaCollector struct{ rep *replication.Replica }

func (c replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInstret, descLagInsns, descLagBytes, descLogBytes, descLogFrames, descHeld, descHeartbeat, descFailovers, descGen, descRole} {
		ch <- d
	}
}

func (c replicaCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rep.Status()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ch <- prometheus.MustNewConstMetric(descInstret, prometheus.CounterValue, float64(s.Instret))
	g(descLagInsns, float64(s.LagInsns))
	g(descLagBytes, float64(s.LagBytes))
	g(descLogBytes, float64(s.LogBytes))
	g(descLogFrames, float64(s.LogFrames))
	g(descHeld, float64(s.HeldOutputs))
	if !s.LastHeartbeat.IsZero() {
		g(descHeartbeat, time.Since(s.LastHeartbeat).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(s.Failovers))
	g(descGen, float64(s.View.Generation))
	g(descRole, 1, s.Role)
}

var (
	descPortFrames  = prometheus.NewDesc("ftvm_switch_port_frames", "Frames through a switch port.", []string{"port", "direction"}, nil)
	descPortBytes   = prometheus.NewDesc("ftvm_switch_port_bytes", "Bytes through a switch port.", []string{"port", "direction"}, nil)
	descPortDropped = prometheus.NewDesc("ftvm_switch_port_dropped_frames", "Frames for a port that it could not take at once.", []string{"port"}, nil)
	descMACs        = prometheus.NewDesc("ftvm_switch_macs", "MAC addresses the switch has learnt.", nil, nil)
	descMACMoves    = prometheus.NewDesc("ftvm_switch_mac_moves", "Times a learnt MAC appeared on another port (a failover's announcement).", nil, nil)
	descFwdActive   = prometheus.NewDesc("ftvm_switch_forward_connections", "Forwarded connections open now.", []string{"forward"}, nil)
	descFwdAccepted = prometheus.NewDesc("ftvm_switch_forward_accepted", "Forwarded connections accepted.", []string{"forward"}, nil)
	descRetransmits = prometheus.NewDesc("ftvm_switch_tcp_retransmits", "TCP segments the switch's stack retransmitted to guests.", nil, nil)
)

// Switch serves the switch's counters as Prometheus /metrics.
func Switch(sw *vswitch.Switch) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(switchCollector{sw})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// switchCollector turns the switch's counters into metrics at scrape time.
type switchCollector struct{ sw *vswitch.Switch }

func (c switchCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPortFrames, descPortBytes, descPortDropped, descMACs, descMACMoves, descFwdActive, descFwdAccepted, descRetransmits} {
		ch <- d
	}
}

func (c switchCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.sw.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, p := range st.Ports {
		counter(descPortFrames, p.FramesIn, p.Name, "in")
		counter(descPortFrames, p.FramesOut, p.Name, "out")
		counter(descPortBytes, p.BytesIn, p.Name, "in")
		counter(descPortBytes, p.BytesOut, p.Name, "out")
		counter(descPortDropped, p.Dropped, p.Name)
	}
	ch <- prometheus.MustNewConstMetric(descMACs, prometheus.GaugeValue, float64(st.MACs))
	counter(descMACMoves, st.MACMoves)
	for _, f := range st.Forwards {
		name := f.Listen + "=" + f.Forward.Guest.String()
		ch <- prometheus.MustNewConstMetric(descFwdActive, prometheus.GaugeValue, float64(f.Active), name)
		counter(descFwdAccepted, f.Accepted, name)
	}
	counter(descRetransmits, st.TCPRetransmits)
}

// FetchStatus reads a replica's /status from its HTTP address (host:port
// or a URL).
func FetchStatus(addr string) (replication.Status, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(strings.TrimSuffix(addr, "/") + "/status")
	if err != nil {
		return replication.Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return replication.Status{}, fmt.Errorf("HTTP %s", resp.Status)
	}
	var st replication.Status
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}

// PrintStatus prints replicas' status as a table.
func PrintStatus(w io.Writer, sts []replication.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tROLE\tPEER\tVIEW\tINSTRUCTIONS\tLAG (insns)\tLAG (bytes)\tLOG RATE\tHELD\tLAST HEARD\tFAILOVERS")
	for _, s := range sts {
		heard := "-"
		if !s.LastHeartbeat.IsZero() {
			heard = time.Since(s.LastHeartbeat).Round(time.Millisecond).String() + " ago"
		}
		peer := s.Peer
		if peer == "" {
			peer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%d\n", s.ID, s.Role, peer, s.View.Generation,
			s.Instret, s.LagInsns, s.LagBytes, Rate(s.LogRate), s.HeldOutputs, heard, s.Failovers)
		if s.Error != "" {
			fmt.Fprintf(tw, "\t  error: %s\n", s.Error)
		}
	}
	tw.Flush()
}

// Rate formats a log rate in bits per second.
func Rate(bytesPerSec float64) string {
	bits := bytesPerSec * 8
	switch {
	case bits >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", bits/1e6)
	case bits >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bits/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bits)
}
