package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"ftvm/replication/plover"
	"ftvm/statesync"
	"ftvm/vm"
)

// Repair in PLOVER mode. A memory error that flips a bit in one replica
// touches no dirty log, so the sync's union does not include the page;
// but the digests compared at the end of the sync differ, and then both
// replicas (still paused) compare the hashes of every page (statesync's
// Mend). Where they differ, the witness decides: it keeps the hashes of
// the pages as they were at the last sync (the primary sends it the
// union's hashes after every sync, and the whole table when it first needs
// it); the replica it disagrees with is repaired from the other. Without a
// witness, or for a page written since the last sync, the primary is
// assumed right, and the report says so.
//
// Each replica keeps the table too (hashed in full when a backup joins,
// brought up to date at every sync), so that the primary can give a new
// witness the whole of it, and a backup that becomes the primary can.

// pageTable is the hashes of every page at the last sync.
type pageTable []statesync.Sum

func (t pageTable) update(hs statesync.Hashes) {
	for k, p := range hs.Pages {
		if p < len(t) {
			t[p] = hs.Sums[k]
		}
	}
}

func (t pageTable) hashes() statesync.Hashes {
	hs := statesync.Hashes{Pages: make([]int, len(t)), Sums: t}
	for i := range hs.Pages {
		hs.Pages[i] = i
	}
	return hs
}

// hashAll hashes every page of e (at a point where both replicas are
// identical).
func (p *Plover) hashAll(e Engine) pageTable {
	hs, err := statesync.HashPages(p.hasher, e, nil)
	if err != nil {
		p.log.Warn("hashing the pages", "err", err.Error())
		return nil
	}
	return pageTable(hs.Sums)
}

// The witness's messages:
//
//	hashes  full uint8 (1: the whole table), then statesync.AppendHashes
//	query   id uint64, count uint32, pages uint32...
//	answer  id uint64, then statesync.AppendHashes of the pages known
func encodeTableMsg(full bool, hs statesync.Hashes) []byte {
	b := []byte{0}
	if full {
		b[0] = 1
	}
	return statesync.AppendHashes(b, hs)
}

// tellWitness sends the witness the hashes the sync left (the whole table
// when it has not had it yet).
func (g *ploverGuest) tellWitness(update statesync.Hashes) {
	p := g.p
	w, ok := p.witnessMember()
	if !ok || g.table == nil {
		return
	}
	p.mu.Lock()
	if p.witnessLost {
		p.witnessLost = false
		g.sentFull = map[uint64]bool{}
	}
	p.mu.Unlock()
	full := !g.sentFull[w.RaftID]
	hs := update
	if full {
		hs = g.table.hashes()
		g.sentFull = map[uint64]bool{w.RaftID: true}
	}
	p.net.send(w, msgHashes, encodeTableMsg(full, hs), false, func() {
		// Lost: the next update must be the whole table.
		p.mu.Lock()
		p.witnessLost = true
		p.mu.Unlock()
	})
}

// witnessMember is the group's witness, if any.
func (p *Plover) witnessMember() (plover.Member, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.core == nil {
		return plover.Member{}, false
	}
	for _, m := range p.core.Status().Members {
		if m.Kind == plover.Witness {
			return m, true
		}
	}
	return plover.Member{}, false
}

// mend repairs the replicas after sync sp ended with different digests:
// every page compared, the witness consulted on those that differ. It
// returns the report.
func (g *ploverGuest) mend(ctx context.Context, sp plover.SyncPoint, union statesync.Bitmap) (*RepairReport, error) {
	p := g.p
	role := statesync.Backup
	if sp.Primary {
		role = statesync.Primary
	}
	m, err := statesync.NewMend(statesync.MendConfig{Role: role, ID: sp.Seq, Engine: g.e, Key: p.key, Hasher: p.hasher})
	if err != nil {
		return nil, err
	}
	out, err := m.Start()
	deadline := time.Now().Add(syncTimeout)
	for {
		p.sendSync(sp.Peer, out)
		if err != nil || m.Done() {
			break
		}
		if diff, need := m.NeedWitness(); need {
			out, err = m.Decide(p.askWitness(ctx, sp.Seq, diff, union))
			continue
		}
		var msg []byte
		if msg, err = p.nextSync(ctx, sp, deadline); err != nil {
			break
		}
		out, err = m.Receive(msg)
	}
	if err != nil {
		return nil, err
	}
	st := m.Stats()
	rep := &RepairReport{At: time.Now()}
	if sp.Primary {
		r := st.Report
		rep.Detail = r.String()
		for _, f := range r.Findings {
			rep.Pages = append(rep.Pages, f.Page)
			rep.Majority = f.Majority
			rep.Faulty = f.Faulty.String()
		}
		if len(r.Faulty(statesync.Backup)) > 0 && len(r.Faulty(statesync.Primary)) > 0 {
			rep.Faulty = "both"
		}
	} else {
		rep.Pages = append(append([]int(nil), st.Received...), st.Sent...)
		rep.Faulty = "backup"
		if len(st.Sent) > 0 {
			rep.Faulty = "primary"
		}
		rep.Detail = fmt.Sprintf("took %d pages from the primary, gave it %d", len(st.Received), len(st.Sent))
	}
	if g.table != nil {
		// The repaired pages hold the shared state's contents again.
		if hs, err := statesync.HashPages(p.hasher, g.e, rep.Pages); err == nil {
			g.table.update(hs)
		}
	}
	return rep, nil
}

// askWitness asks the witness for its hashes of pages, and returns those
// of the pages neither replica wrote since the last sync (nil: no witness,
// no answer in time, or nothing usable).
func (p *Plover) askWitness(ctx context.Context, id uint64, pages []int, union statesync.Bitmap) *statesync.Hashes {
	w, ok := p.witnessMember()
	if !ok || len(pages) == 0 {
		return nil
	}
	q := binary.LittleEndian.AppendUint64(nil, id)
	q = binary.LittleEndian.AppendUint32(q, uint32(len(pages)))
	for _, pg := range pages {
		q = binary.LittleEndian.AppendUint32(q, uint32(pg))
	}
	p.net.send(w, msgHashQuery, q, false, nil)
	deadline := time.NewTimer(max(p.cfg.Timeout, time.Second))
	defer deadline.Stop()
	for {
		p.mu.Lock()
		var ans []byte
		keep := p.syncQ[:0]
		for _, m := range p.syncQ {
			if m.t == msgHashAnswer && m.from == w.ID && len(m.p) >= 8 && binary.LittleEndian.Uint64(m.p) == id && ans == nil {
				ans = m.p[8:]
				continue
			}
			keep = append(keep, m)
		}
		p.syncQ = keep
		p.mu.Unlock()
		if ans != nil {
			hs, err := statesync.DecodeHashes(ans, 1<<31-1)
			if err != nil {
				p.log.Warn("the witness's hashes", "err", err.Error())
				return nil
			}
			hs = hs.Without(union)
			return &hs
		}
		select {
		case <-p.changed:
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			p.log.Warn("the witness did not answer: the primary is assumed right", "witness", w.ID)
			return nil
		}
	}
}

// witnessTable is what a witness keeps: the hashes of every page at the
// last sync.
type witnessTable struct {
	sums  pageTable
	valid bool
}

// deliverOther takes the member messages that are neither consensus nor
// sync: the primary's hashes and questions (on a witness), the witness's
// answers (on the primary).
func (p *Plover) deliverOther(m inbound) {
	switch m.t {
	case msgHashAnswer:
		p.mu.Lock()
		if len(p.syncQ) < 4096 {
			p.syncQ = append(p.syncQ, m)
		}
		p.mu.Unlock()
		p.signal()
		return
	case msgHashes, msgHashQuery:
		p.mu.Lock()
		leader := ""
		if p.core != nil {
			leader = p.core.Status().Leader
		}
		witness := p.self.Kind == plover.Witness
		p.mu.Unlock()
		if !witness || m.from != leader {
			p.r.warnRare(&p.r.rejectWarn, "page hashes from a member that is not the primary", "from", m.from)
			return
		}
		if m.t == msgHashes {
			p.takeTable(m.p)
		} else {
			p.answerQuery(m)
		}
		return
	}
	p.r.warnRare(&p.r.rejectWarn, "unexpected member message", "from", m.from, "type", m.t.String())
}

// takeTable (witness) takes the whole table or an update.
func (p *Plover) takeTable(b []byte) {
	if len(b) < 1 {
		return
	}
	hs, err := statesync.DecodeHashes(b[1:], 1<<24)
	if err != nil {
		p.log.Warn("the primary's page hashes", "err", err.Error())
		return
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	t := &p.wtable
	if b[0] == 1 {
		t.sums, t.valid = make(pageTable, len(hs.Pages)), true
		for k, pg := range hs.Pages {
			if pg != k {
				t.valid = false
			}
		}
	}
	if t.valid {
		t.sums.update(hs)
	}
}

// answerQuery (witness) answers the primary's question with the hashes it
// has.
func (p *Plover) answerQuery(m inbound) {
	q := m.p
	if len(q) < 12 || len(q) != 12+4*int(binary.LittleEndian.Uint32(q[8:])) {
		return
	}
	var hs statesync.Hashes
	p.wmu.Lock()
	if p.wtable.valid {
		for k := range int(binary.LittleEndian.Uint32(q[8:])) {
			pg := int(binary.LittleEndian.Uint32(q[12+4*k:]))
			if pg < len(p.wtable.sums) && (len(hs.Pages) == 0 || pg > hs.Pages[len(hs.Pages)-1]) {
				hs.Pages = append(hs.Pages, pg)
				hs.Sums = append(hs.Sums, p.wtable.sums[pg])
			}
		}
	}
	p.wmu.Unlock()
	p.mu.Lock()
	var to plover.Member
	for _, mm := range p.core.Status().Members {
		if mm.ID == m.from {
			to = mm
		}
	}
	p.mu.Unlock()
	if to.ID == "" {
		return
	}
	p.net.send(to, msgHashAnswer, statesync.AppendHashes(binary.LittleEndian.AppendUint64(nil, binary.LittleEndian.Uint64(q)), hs), false, nil)
}

// BitFlipper is an engine that can simulate a memory error (the RISC-V
// machine is one).
type BitFlipper interface {
	InjectBitFlip(page, offset, bit int) error
}

// BitFlip names a bit of guest memory; Page < 0 picks a random page that
// holds data, Offset < 0 and Bit < 0 a random byte and bit.
type BitFlip struct{ Page, Offset, Bit int }

// InjectBitFlip flips a bit of this replica's guest memory, as a memory
// error would, between two slices of the guest. It returns the bit
// flipped.
func (p *Plover) InjectBitFlip(ctx context.Context, f BitFlip) (BitFlip, error) {
	req := &flipRequest{f: f, done: make(chan struct{})}
	p.mu.Lock()
	p.flips = append(p.flips, req)
	p.mu.Unlock()
	p.signal()
	select {
	case <-req.done:
		return req.f, req.err
	case <-ctx.Done():
		return f, ctx.Err()
	}
}

type flipRequest struct {
	f    BitFlip
	err  error
	done chan struct{}
}

// flip carries out a bit flip on the guest's goroutine.
func flip(e Engine, f BitFlip) (BitFlip, error) {
	bf, ok := e.(BitFlipper)
	if !ok {
		return f, errors.New("the engine cannot simulate memory errors")
	}
	if f.Page < 0 {
		buf := make([]byte, e.PageSize())
		for range 10000 {
			pg := rand.IntN(e.Pages())
			if e.ReadPage(pg, buf) == nil && !allZero(buf) {
				f.Page = pg
				break
			}
		}
		if f.Page < 0 {
			return f, errors.New("no page with data found")
		}
	}
	if f.Offset < 0 {
		f.Offset = rand.IntN(e.PageSize())
	}
	if f.Bit < 0 {
		f.Bit = rand.IntN(8)
	}
	return f, bf.InjectBitFlip(f.Page, f.Offset, f.Bit)
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// doFlips carries out the bit flips asked for (guest's goroutine).
func (g *ploverGuest) doFlips() {
	p := g.p
	p.mu.Lock()
	reqs := p.flips
	p.flips = nil
	p.mu.Unlock()
	for _, r := range reqs {
		r.f, r.err = flip(g.e, r.f)
		if r.err == nil {
			p.log.Warn("memory error injected", "page", r.f.Page, "offset", r.f.Offset, "bit", r.f.Bit)
		}
		close(r.done)
	}
}

var _ = vm.Engine(nil)
