package spool

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"
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

// Clock says where on the device's clocks a reading was taken, beside its
// wall-clock time: the boot it was taken in and CLOCK_BOOTTIME then. With
// the wall-clock offset of that boot, once known, an unsynced time can be
// corrected when the reading is sent. The zero Clock means unknown.
type Clock struct {
	Boot     BootID
	BootTime time.Duration
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
