package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/spool/boltfile"
)

// precheck checks an existing file, read-only, in this goroutine, before
// bbolt opens it for writing: that its file holds all its pages, and, when
// full is set, every key and value.
//
// With NoFreelistSync bbolt rebuilds its freelist at open by walking the
// whole file in a goroutine of its own, where a corrupt page panics out of
// reach of any recover and kills the daemon. A full walk here, with faults
// turned into panics and recovered, finds such a file and quarantines it
// instead; it doubles the open time, so it runs only after an open that
// did not finish (see openMarker).
func (s *Spool) precheck(full bool) (err error) {
	path := s.opts.Path
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", path, err)
	}
	if full {
		// bbolt's cursor loops forever on a page cycle: walk the page
		// graph first, without it.
		if err := boltfile.CheckPages(path); err != nil {
			return fmt.Errorf("spool: check %s: %w", path, err)
		}
	}
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("spool: check %s: bbolt panic: %v: %w", path, p, ErrCorrupt)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: s.opts.LockTimeout})
	if err != nil {
		return s.openErr(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); fi.Size() < need {
			return fmt.Errorf("file has %d bytes, its pages need %d: %w", fi.Size(), need, ErrCorrupt)
		}
		if !full {
			return nil
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return boltfile.WalkBucket(b) })
	})
	if err != nil {
		return fmt.Errorf("spool: check %s: %w", path, err)
	}
	return nil
}

// maxOpenAttempts is how many opens may die in a row (a bbolt panic out of
// reach) before the file is quarantined without another try.
const maxOpenAttempts = 2

// openMarker is written beside the file while bbolt opens it and removed
// when the open finished: one left behind means an open killed the
// process, or the power went (or the machine rebooted) during it. It holds
// the number of such opens and the boot id they happened in:
//
//	<died> <boot id>
//
// Only deaths in this boot count: a marker from another boot was left by
// a power cut or a reboot, which says nothing against the file, and two
// of them in a row must not quarantine a healthy file. A marker without a
// boot id (an older release's, or where the boot id is unreadable) counts
// as a death in this boot.
func openMarker(path string) string { return path + ".opening" }

// bootIDFile is where beginOpen reads this boot's id.
var bootIDFile = "/proc/sys/kernel/random/boot_id"

// beginOpen records an open attempt and says how many died before it in
// this boot.
func beginOpen(path string) (died int) {
	boot, bootErr := ReadBootID(bootIDFile)
	if b, err := os.ReadFile(openMarker(path)); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 0 {
			died, _ = strconv.Atoi(f[0])
		}
		died = max(died, 1)
		if len(f) > 1 && bootErr == nil {
			if was, err := ParseBootID(f[1]); err == nil && was != boot {
				died = 0 // a power cut or a reboot, not a crash
			}
		}
	}
	marker := strconv.Itoa(died + 1)
	if bootErr == nil {
		marker += " " + boot.String()
	}
	_ = os.WriteFile(openMarker(path), []byte(marker+"\n"), 0o600)
	return died
}

// endOpen removes the marker, durably: a removal a power cut undid would
// bring the marker back and count this open as one that died.
func endOpen(path string) {
	if os.Remove(openMarker(path)) == nil {
		boltfile.SyncDir(filepath.Dir(path))
	}
}
