package spool

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/outpost-iot/outpost/spool/boltfile"
)

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
