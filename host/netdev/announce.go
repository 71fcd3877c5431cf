package netdev

import "time"

// announceDelays is when the announcement is repeated after the first
// one, following QEMU's announce-self defaults (5 rounds, 50 ms then 100 ms
// more each time).
var announceDelays = []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 250 * time.Millisecond, 350 * time.Millisecond}

// AnnounceSelf tells the network that mac is now behind b (a guest
// restored or gone live on this host): an Announce frame now, before the
// guest runs, and four more from a goroutine over the next 800 ms, so a
// lost frame or a switch slow to learn does not leave the guest
// unreachable. b's Transmit must be safe to call concurrently with the
// machine's (every backend of this package's is).
func AnnounceSelf(b Backend, mac [6]byte) {
	f := Announce(mac)
	b.Transmit(f)
	go func() {
		for _, d := range announceDelays {
			time.Sleep(d)
			b.Transmit(f)
		}
	}()
}
