package spool

import (
	"math/bits"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/spool/record"
)

// TestMmapBudgetFits checks, on every architecture and above all on 32-bit
// ARM, that the mappings the default cap needs fit together: a spool at
// DefaultMaxBytes (logical) holds about 3% more in pages, which bbolt maps
// rounded up to 1 GiB, and a compaction maps its new file beside it (at
// most a quarter of the old one, so 256 MiB). Under qemu the address space
// is larger than on a Pi's 3G/1G kernel; this catches arithmetic and
// option mistakes, not the last few hundred MiB.
func TestMmapBudgetFits(t *testing.T) {
	dir := t.TempDir()
	const spoolMap = 1 << 30
	compactMap := spoolMap / 4
	a, err := bolt.Open(filepath.Join(dir, "spool.db"), 0o600, &bolt.Options{PageSize: record.PageSize, InitialMmapSize: spoolMap})
	if err != nil {
		t.Fatalf("mapping %d MiB for a full spool: %v", spoolMap>>20, err)
	}
	defer a.Close()
	b, err := bolt.Open(filepath.Join(dir, "spool.db.compact"), 0o600, &bolt.Options{PageSize: record.PageSize, InitialMmapSize: compactMap})
	if err != nil {
		t.Fatalf("mapping %d MiB for a compaction beside it: %v", compactMap>>20, err)
	}
	defer b.Close()
}

func TestMaxBytesBoundOn32Bit(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.MaxBytes = maxBytes32 + 1
	_, err := opts.withDefaults()
	if bits.UintSize == 32 {
		if err == nil || !strings.Contains(err.Error(), "32-bit") {
			t.Errorf("max bytes %d on 32-bit: error = %v; want it refused", opts.MaxBytes, err)
		}
		return
	}
	if err != nil {
		t.Errorf("max bytes %d on 64-bit: %v", opts.MaxBytes, err)
	}
	opts.MaxBytes = 0
	if o, err := opts.withDefaults(); err != nil || o.MaxBytes != DefaultMaxBytes {
		t.Errorf("default max bytes = %d, %v", o.MaxBytes, err)
	}
}
