package spool

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BootID identifies one boot of the device, as the kernel's
// /proc/sys/kernel/random/boot_id does.
type BootID [16]byte

// ReadBootID reads a boot id file (the kernel's is
// /proc/sys/kernel/random/boot_id).
func ReadBootID(file string) (BootID, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return BootID{}, fmt.Errorf("failed to read boot id: %w", err)
	}
	return ParseBootID(strings.TrimSpace(string(b)))
}

// ParseBootID parses the kernel's spelling of a boot id, a UUID.
func ParseBootID(s string) (BootID, error) {
	var id BootID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return id, fmt.Errorf("boot id %q: want a UUID", s)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("boot id %q: %w", s, err)
	}
	return id, nil
}

func (b BootID) String() string {
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// bootRec is a boots table entry: id(16) ‖ flags(1, bit 0: offset known) ‖
// varint offset ns (wall clock minus boot clock).
type bootRec struct {
	id          BootID
	offsetKnown bool
	offset      time.Duration
}

func (r bootRec) encode() []byte {
	b := append(make([]byte, 0, 16+1+10), r.id[:]...)
	var flags byte
	if r.offsetKnown {
		flags = 1
	}
	b = append(b, flags)
	return binary.AppendVarint(b, int64(r.offset))
}

func decodeBootRec(b []byte) (bootRec, error) {
	var r bootRec
	if len(b) < 18 || b[16] > 1 {
		return r, fmt.Errorf("boot record: %w", errBadValue)
	}
	copy(r.id[:], b)
	r.offsetKnown = b[16] == 1
	off, n := binary.Varint(b[17:])
	if n <= 0 || 17+n != len(b) {
		return r, fmt.Errorf("boot record offset: %w", errBadValue)
	}
	r.offset = time.Duration(off)
	return r, nil
}

// correct gives a reading stored unsynced the time its boot clock says,
// once the wall-clock offset of its boot is known: CLOCK_BOOTTIME when it
// was taken plus the boot's latest offset, without the unsynced flag. A
// reading taken synced, or in a boot that ended before any sync, is left
// as stored. boots is the boots table.
func correct(d *stored, boots []bootRec) {
	if !d.unsynced || !d.hasBoot || int(d.boot) >= len(boots) {
		return
	}
	if r := boots[d.boot]; r.offsetKnown {
		d.time = time.Unix(0, int64(r.offset)+int64(d.bootTime)).UTC()
		d.unsynced = false
	}
}

// SetBootOffset records in the boots table the wall-clock offset of a boot:
// the wall clock minus CLOCK_BOOTTIME, measured once the clock is
// synchronised (again after a step). From then on the readings of that
// boot stored unsynced are read (Next, NextFresh, Each, dead letters,
// Salvage) with the time CLOCK_BOOTTIME + offset and without the unsynced
// flag; readings stored synced keep their time. The backlog is not
// rewritten: the commit holding the offset writes one small record. It
// returns once that is committed.
func (s *Spool) SetBootOffset(ctx context.Context, boot BootID, offset time.Duration) error {
	if boot == (BootID{}) {
		return errors.New("spool: set boot offset: no boot id")
	}
	o := &op{kind: opBootOffset, boot: boot, offset: offset}
	// Readers see the offset only once it is committed, so nothing is sent
	// corrected that a restart would send uncorrected.
	o.committed = func() {
		s.dbMu.RLock()
		defer s.dbMu.RUnlock()
		s.tab.setOffset(boot, offset)
	}
	if err := s.submit(ctx, o); err != nil {
		return fmt.Errorf("spool: set boot offset of %v: %w", boot, err)
	}
	return nil
}

// BootOffset returns the offset recorded for a boot, and whether there is
// one.
func (s *Spool) BootOffset(boot BootID) (time.Duration, bool) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	t := s.tab
	if t == nil {
		return 0, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if idx, ok := t.bootIDs[boot]; ok && t.boots[idx].offsetKnown {
		return t.boots[idx].offset, true
	}
	return 0, false
}

// applyBootOffset writes the boot record of o.boot with its offset, adding
// the boot when new. The in-memory table takes the offset when the commit
// succeeded (op.committed).
func (s *Spool) applyBootOffset(tx *bolt.Tx, o *op) error {
	idx, err := s.tab.bootIndex(tx, o.boot)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketBoots)
	r := bootRec{id: o.boot, offsetKnown: true, offset: o.offset}
	if err := b.Put(binary.BigEndian.AppendUint32(nil, idx), r.encode()); err != nil {
		return fmt.Errorf("failed to record the clock offset of boot %v: %w", o.boot, err)
	}
	return nil
}
