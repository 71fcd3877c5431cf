package kv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is the key-value store and its optional durable log. One mutex
// guards everything: the guest has a single hart, so finer locking would
// only add code.
type Server struct {
	mu      sync.Mutex // guards everything below
	data    map[string][]byte
	log     *Log // nil when memory-only
	started time.Time

	// commitMu serialises log commits. It is held without mu during the
	// flush, so other clients keep executing and their records are
	// committed together by the next flush (group commit).
	commitMu sync.Mutex

	clients  int64
	commands int64
}

// NewServer returns a memory-only server.
func NewServer() *Server {
	return &Server{data: make(map[string][]byte), started: time.Now()}
}

// AttachLog replays the log on dev into the server and makes every later
// write durable on it. Call it before Serve.
func (s *Server) AttachLog(dev Device, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var discard bytes.Buffer
	l, err := OpenLog(dev, size, func(args [][]byte) {
		s.exec(args, &discard)
		discard.Reset()
	})
	if err != nil {
		return err
	}
	s.log = l
	s.commands = 0 // replayed commands are not client traffic
	return nil
}

// LogStats returns the number of records in the log and the bytes used.
func (s *Server) LogStats() (records, used, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return 0, 0, 0
	}
	return s.log.Records, s.log.Used(), s.log.Size()
}

// Serve accepts connections on l until it fails.
func (s *Server) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go s.ServeConn(c)
	}
}

// ServeConn runs one client connection. Pipelined commands are executed as
// a batch: all commands already buffered are run, the log is committed up
// to where it stood after the last of them, and only then are their
// replies written. So no reply reaches a client before every write it
// acknowledges (or has read the result of, even another client's) is
// durable, while a pipeline of N writes costs one flush rather than N.
func (s *Server) ServeConn(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	s.clients++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.clients--
		s.mu.Unlock()
	}()

	r := bufio.NewReaderSize(c, 64<<10)
	var out bytes.Buffer
	var need int64 // log offset that must be durable before replying
	for {
		args, err := ReadCommand(r)
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				WriteError(&out, "ERR "+pe.Error())
				s.send(c, &out, need)
			}
			return
		}
		if len(args) == 0 {
			continue
		}
		s.mu.Lock()
		quit := s.exec(args, &out)
		if s.log != nil {
			need = s.log.Used()
		}
		s.mu.Unlock()
		if quit || r.Buffered() == 0 || out.Len() >= 64<<10 {
			if !s.send(c, &out, need) || quit {
				return
			}
		}
	}
}

// send makes the log durable up to need and then writes the batched
// replies. It reports whether the connection is still usable.
func (s *Server) send(c net.Conn, out *bytes.Buffer, need int64) bool {
	if err := s.commit(need); err != nil {
		// Memory is now ahead of the disk and the client must not be told
		// otherwise. Stop; the next start replays a consistent state.
		log.Fatalf("kvserver: log commit failed: %v", err)
	}
	_, err := c.Write(out.Bytes())
	out.Reset()
	return err == nil
}

// commit flushes the log until offset need is durable. If a commit by
// another client already covered it, it returns without flushing.
func (s *Server) commit(need int64) error {
	if s.log == nil {
		return nil
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if s.log.Durable() >= need {
		s.mu.Unlock()
		return nil
	}
	buf, off := s.log.takePending()
	s.mu.Unlock()
	if err := s.log.writeOut(buf, off); err != nil {
		return err
	}
	s.mu.Lock()
	s.log.committed()
	s.mu.Unlock()
	return nil
}

// writeCommands mutate the data and are recorded in the log.
var writeCommands = map[string]bool{
	"SET": true, "DEL": true, "INCR": true, "INCRBY": true, "DECR": true,
	"DECRBY": true, "MSET": true, "FLUSHALL": true, "FLUSHDB": true,
}

// exec runs one command with s.mu held, appending its reply to out. It
// reports whether the connection should be closed (QUIT).
func (s *Server) exec(args [][]byte, out *bytes.Buffer) (quit bool) {
	s.commands++
	name := strings.ToUpper(string(args[0]))
	if writeCommands[name] && s.log != nil && !s.log.Fits(args) {
		WriteError(out, "ERR "+ErrLogFull.Error())
		return false
	}
	if s.run(name, args, out) && s.log != nil {
		// Fits was checked above, so Append cannot fail.
		_ = s.log.Append(args)
	}
	return name == "QUIT"
}

// run executes a command and reports whether it changed the data (and so
// must be logged). Replay calls it through exec with the same arguments,
// which is why every write must be deterministic.
func (s *Server) run(name string, args [][]byte, out *bytes.Buffer) (changed bool) {
	argc := len(args)
	arity := func(min, max int) bool {
		if argc < min || (max >= 0 && argc > max) {
			WriteError(out, fmt.Sprintf("ERR wrong number of arguments for '%s' command", strings.ToLower(name)))
			return false
		}
		return true
	}
	switch name {
	case "PING":
		if !arity(1, 2) {
			return false
		}
		if argc == 2 {
			WriteBulk(out, args[1])
		} else {
			WriteSimple(out, "PONG")
		}
	case "ECHO":
		if arity(2, 2) {
			WriteBulk(out, args[1])
		}
	case "QUIT":
		WriteSimple(out, "OK")
	case "GET":
		if arity(2, 2) {
			WriteBulk(out, s.get(args[1]))
		}
	case "SET":
		if !arity(3, -1) {
			return false
		}
		if argc > 3 {
			// Expiry and conditional options would need a clock and more
			// state; refuse them rather than ignore them.
			WriteError(out, "ERR SET options are not supported")
			return false
		}
		s.data[string(args[1])] = bytes.Clone(args[2])
		WriteSimple(out, "OK")
		return true
	case "MSET":
		if !arity(3, -1) {
			return false
		}
		if argc%2 != 1 {
			WriteError(out, "ERR wrong number of arguments for 'mset' command")
			return false
		}
		for i := 1; i < argc; i += 2 {
			s.data[string(args[i])] = bytes.Clone(args[i+1])
		}
		WriteSimple(out, "OK")
		return true
	case "MGET":
		if !arity(2, -1) {
			return false
		}
		WriteArrayHeader(out, argc-1)
		for _, k := range args[1:] {
			WriteBulk(out, s.get(k))
		}
	case "DEL":
		if !arity(2, -1) {
			return false
		}
		var n int64
		for _, k := range args[1:] {
			if _, ok := s.data[string(k)]; ok {
				delete(s.data, string(k))
				n++
			}
		}
		WriteInt(out, n)
		return n > 0
	case "EXISTS":
		if !arity(2, -1) {
			return false
		}
		var n int64
		for _, k := range args[1:] {
			if _, ok := s.data[string(k)]; ok {
				n++
			}
		}
		WriteInt(out, n)
	case "INCR", "DECR", "INCRBY", "DECRBY":
		by := int64(1)
		if name == "INCRBY" || name == "DECRBY" {
			if !arity(3, 3) {
				return false
			}
			v, err := strconv.ParseInt(string(args[2]), 10, 64)
			if err != nil {
				WriteError(out, "ERR value is not an integer or out of range")
				return false
			}
			by = v
		} else if !arity(2, 2) {
			return false
		}
		if name[0] == 'D' {
			if by == -by && by != 0 { // math.MinInt64 cannot be negated
				WriteError(out, "ERR decrement would overflow")
				return false
			}
			by = -by
		}
		return s.incr(args[1], by, out)
	case "DBSIZE":
		if arity(1, 1) {
			WriteInt(out, int64(len(s.data)))
		}
	case "FLUSHALL", "FLUSHDB":
		if !arity(1, 2) { // optional ASYNC/SYNC, both mean "now" here
			return false
		}
		changed = len(s.data) > 0
		clear(s.data)
		WriteSimple(out, "OK")
		return changed
	case "SELECT":
		if arity(2, 2) {
			if string(args[1]) == "0" {
				WriteSimple(out, "OK")
			} else {
				WriteError(out, "ERR DB index is out of range")
			}
		}
	case "COMMAND":
		// redis-cli asks for command docs to drive its hints; an empty
		// array tells it there are none.
		WriteArrayHeader(out, 0)
	case "CONFIG":
		s.config(args, out)
	case "INFO":
		WriteBulk(out, []byte(s.info()))
	default:
		WriteError(out, fmt.Sprintf("ERR unknown command '%s'", printable(args[0])))
	}
	return false
}

func (s *Server) get(k []byte) []byte {
	v, ok := s.data[string(k)]
	if !ok {
		return nil
	}
	if v == nil {
		return []byte{} // an empty value is not the null bulk string
	}
	return v
}

func (s *Server) incr(k []byte, by int64, out *bytes.Buffer) bool {
	var cur int64
	if v, ok := s.data[string(k)]; ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			WriteError(out, "ERR value is not an integer or out of range")
			return false
		}
		cur = n
	}
	next := cur + by
	if (by > 0 && next < cur) || (by < 0 && next > cur) {
		WriteError(out, "ERR increment or decrement would overflow")
		return false
	}
	s.data[string(k)] = strconv.AppendInt(nil, next, 10)
	WriteInt(out, next)
	return true
}

// config answers CONFIG GET for the two parameters redis-benchmark asks
// about at start-up, so it does not print a warning.
func (s *Server) config(args [][]byte, out *bytes.Buffer) {
	if len(args) != 3 || !strings.EqualFold(string(args[1]), "GET") {
		WriteError(out, "ERR only CONFIG GET is supported")
		return
	}
	param := strings.ToLower(string(args[2]))
	switch param {
	case "save":
		WriteArrayHeader(out, 2)
		WriteBulk(out, []byte(param))
		WriteBulk(out, []byte{})
	case "appendonly":
		v := "no"
		if s.log != nil {
			v = "yes"
		}
		WriteArrayHeader(out, 2)
		WriteBulk(out, []byte(param))
		WriteBulk(out, []byte(v))
	default:
		WriteArrayHeader(out, 0)
	}
}

func (s *Server) info() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Server\r\nredis_version:7.0.0\r\nftvm_kvserver:1\r\nuptime_in_seconds:%d\r\n",
		int64(time.Since(s.started).Seconds()))
	fmt.Fprintf(&b, "# Clients\r\nconnected_clients:%d\r\n", s.clients)
	fmt.Fprintf(&b, "# Stats\r\ntotal_commands_processed:%d\r\n", s.commands)
	if s.log != nil {
		fmt.Fprintf(&b, "# Persistence\r\nlog_enabled:1\r\nlog_records:%d\r\nlog_bytes:%d\r\nlog_capacity:%d\r\nlog_syncs:%d\r\n",
			s.log.Records, s.log.Used(), s.log.Size(), s.log.Syncs)
	} else {
		b.WriteString("# Persistence\r\nlog_enabled:0\r\n")
	}
	fmt.Fprintf(&b, "# Keyspace\r\ndb0:keys=%d\r\n", len(s.data))
	return b.String()
}
