// Command kvserver is the guest's Redis-protocol key-value server. With a
// block device (default /dev/vda) every write is logged to the raw device
// and flushed before it is acknowledged; without one it keeps data in memory.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"os"

	"ftvm/guest/kv"
)

func main() {
	addr := flag.String("addr", ":6379", "TCP listen address")
	disk := flag.String("disk", "/dev/vda", "raw block device for the durable log (memory-only if absent; \"\" to disable)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("kvserver: ")

	s := kv.NewServer()
	if *disk != "" {
		if f, err := os.OpenFile(*disk, os.O_RDWR, 0); err == nil {
			size, err := f.Seek(0, io.SeekEnd)
			if err != nil {
				log.Fatalf("%s: %v", *disk, err)
			}
			if err := s.AttachLog(f, size); err != nil {
				log.Fatalf("%s: replay: %v", *disk, err)
			}
			rec, used, _ := s.LogStats()
			log.Printf("log on %s: %d records replayed, %d of %d bytes used", *disk, rec, used, size)
		} else if os.IsNotExist(err) {
			log.Printf("no %s, data is memory-only", *disk)
		} else {
			log.Fatalf("%s: %v", *disk, err)
		}
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", l.Addr())
	log.Fatal(s.Serve(l))
}
