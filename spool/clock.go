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

	"github.com/outpost-iot/outpost/spool/record"
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
		s.tab.SetOffset(boot, offset)
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
	if s.tab == nil {
		return 0, false
	}
	return s.tab.Offset(boot)
}

// applyBootOffset writes the boot record of o.boot with its offset, adding
// the boot when new. The in-memory table takes the offset when the commit
// succeeded (op.committed).
func (s *Spool) applyBootOffset(tx *bolt.Tx, o *op) error {
	idx, err := s.tab.BootIndex(tx, o.boot)
	if err != nil {
		return err
	}
	b := tx.Bucket(record.BucketBoots)
	r := record.Boot{ID: o.boot, OffsetKnown: true, Offset: o.offset}
	if err := b.Put(binary.BigEndian.AppendUint32(nil, idx), r.Encode()); err != nil {
		return fmt.Errorf("failed to record the clock offset of boot %v: %w", o.boot, err)
	}
	return nil
}
