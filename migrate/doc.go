// Package migrate transfers the whole state of a running engine (RAM,
// processor and devices, disk) to a new replica while the guest keeps
// running, in the style of live migration: the re-protection step of
// primary/backup fault tolerance, after which the primary streams its
// input log to the new backup.
//
// The sender (NewSender, Step, Finish) is driven by the caller's run loop,
// between Run calls, on the goroutine that owns the engine:
//
//  1. Pre-copy, while the guest runs. The first round sends every RAM
//     page that is not all zero; each later round sends the pages the guest
//     (or device DMA) wrote during the previous one, from a dirty log of
//     the engine's own (vm.DirtyLog: the engine's digest and other logs do
//     not take its bits). Meanwhile the receiver hashes its copy of the
//     disk in ChunkSize chunks and sends the hashes; the sender sends the
//     chunks that differ, then, each round, the chunks written since
//     (TrackedDisk records them). Each Step sends about Options.StepBytes.
//     Pre-copy has converged when a round would resend few pages and
//     chunks, or after a round limit.
//  2. The pause (Finish, the guest stopped): the last dirty pages and
//     chunks, the engine's state without RAM (vm.Migratable.SaveState),
//     and the instruction count and digest. The receiver builds its engine
//     through the caller's Factory, checks that its digest, instruction
//     count and disk chunk hashes are the sender's, and says so; the
//     sender checks the receiver's answer in turn.
//
// The package knows nothing of RISC-V: it works on any vm.Migratable
// (machine.Machine is one) and any io.ReadWriter (authentication is the
// transport's business, TLS for instance). The stream format is described
// in wire.go; everything read from the peer is checked, and allocations
// are bounded by the RAM size the receiver accepts.
package migrate
