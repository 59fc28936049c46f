package record

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Boot is a boots table entry: id(16) ‖ flags(1, bit 0: offset known) ‖
// varint offset ns (wall clock minus boot clock).
type Boot struct {
	ID          [16]byte // the kernel's boot id
	OffsetKnown bool
	Offset      time.Duration
}

// Encode returns the boots table value of r.
func (r Boot) Encode() []byte {
	b := append(make([]byte, 0, 16+1+10), r.ID[:]...)
	var flags byte
	if r.OffsetKnown {
		flags = 1
	}
	b = append(b, flags)
	return binary.AppendVarint(b, int64(r.Offset))
}

// DecodeBoot decodes a boots table value.
func DecodeBoot(b []byte) (Boot, error) {
	var r Boot
	if len(b) < 18 || b[16] > 1 {
		return r, fmt.Errorf("boot record: %w", ErrBadValue)
	}
	copy(r.ID[:], b)
	r.OffsetKnown = b[16] == 1
	off, n := binary.Varint(b[17:])
	if n <= 0 || 17+n != len(b) {
		return r, fmt.Errorf("boot record offset: %w", ErrBadValue)
	}
	r.Offset = time.Duration(off)
	return r, nil
}

// Correct gives a reading stored unsynced the time its boot clock says,
// once the wall-clock offset of its boot is known: CLOCK_BOOTTIME when it
// was taken plus the boot's latest offset, without the unsynced flag. A
// reading taken synced, or in a boot that ended before any sync, is left
// as stored. boots is the boots table.
func Correct(d *Stored, boots []Boot) {
	if !d.Unsynced || !d.HasBoot || int(d.Boot) >= len(boots) {
		return
	}
	if r := boots[d.Boot]; r.OffsetKnown {
		d.Time = time.Unix(0, int64(r.Offset)+int64(d.BootTime)).UTC()
		d.Unsynced = false
	}
}
