// Package statesync is the state synchronisation shared by the
// replication modes that copy state rather than replay inputs: Remus
// checkpointing (a backup that does not execute applies the primary's
// checkpoints), COLO and PLOVER (two replicas that both execute are
// brought back to the primary's state by sending only the pages in which
// they differ), and the repair of a replica whose memory was corrupted.
//
// It knows nothing of RISC-V: it works on the vm package's seam, reading
// an engine's pages and state through vm.Migratable and applying them to
// a live replica through vm.Syncable. It does no I/O of its own and starts
// no goroutine that outlives a call: encoders write to the caller's
// io.Writer, decoders are fed the bytes the caller received, and the sync
// exchange of two executing replicas is a step-wise protocol object
// (messages in, messages out) that the replication driver carries over
// its links. The only concurrency is the hasher's, which spreads the
// hashing of a set of pages over the host's cores and joins before it
// returns.
//
// The pieces:
//
//   - Bitmap: sets of page or disk chunk indices (the layout of
//     vm.DirtyLog), with union and difference.
//   - Hasher: the SHA-256 of each page of a set, in parallel, in the
//     set's order. DiskChunks presents a disk as pages, so disks are
//     hashed, compared and sent like RAM.
//   - The checkpoint format (wire.go): dirty pages, the engine's state and
//     disk writes, with a sequence number, a length and an HMAC-SHA256
//     over the whole; Encoder writes one, Decoder reads a stream of them
//     from an untrusted peer with bounded allocation and hands over only
//     complete, authenticated ones.
//   - Applier: Remus's backup side. Checkpoints are staged as they
//     arrive (their disk writes included) and applied to the replica only
//     when complete and in sequence; a torn one is discarded, a forged or
//     damaged one refused, and the last committed state stays.
//   - Sync: the exchange of two executing replicas (PLOVER's sync, COLO's
//     resynchronisation): dirty bitmaps exchanged and unioned, the union's
//     pages hashed on both sides, the primary's divergent pages and its
//     state sent and applied, both digests compared.
//   - Mend: the repair as a step-wise exchange of two paused replicas
//     (like Sync), over every page, with a witness's hashes where there is
//     one.
//   - Repair: page hashes from two replicas, and optionally from a third
//     party holding those of the last sync, compared page by page; where
//     they differ, the majority names the faulty replica (the primary is
//     assumed right without one, and the report says so), and the good
//     pages are sent in the checkpoint format and applied.
//
// How the modes use it:
//
//   - Remus primary, each period: NewEncoder(buf, key, seq, pageSize);
//     DiskWrite for each disk write the guest makes during the epoch
//     (vm.Outputs.Disk); at the pause, Pages with what the engine's dirty
//     log collected, State with SaveState's output, End with the
//     instruction count (and the digest, to have the backup check it).
//     The buffer is sent while the next epoch runs; the epoch's outputs
//     leave when the backup acknowledges seq. Encoding costs an HMAC pass
//     over the checkpoint: a primary that wants the shortest pause copies
//     the dirty pages and encodes after resuming.
//   - Remus backup: an Applier on the engine a live transfer built; its
//     Write takes the stream, Committed is what to acknowledge; on
//     failover, Discard, then run the engine.
//   - COLO on an output mismatch, PLOVER at an idle point: a Sync on each
//     side, with the dirty bitmaps collected since the previous sync.
//   - Repair: HashPages on each replica (and the witness's hashes of the
//     last sync, Without the pages written since), Compare, then
//     EncodePages from the good replica and ApplyPages on the faulty one.
package statesync
