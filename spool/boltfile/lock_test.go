package boltfile

import "testing"

func TestFindLockHolder(t *testing.T) {
	locks := "1: POSIX  ADVISORY  WRITE 99 00:1f:42 0 EOF\n" +
		"2: FLOCK  ADVISORY  WRITE 4321 fd:01:1846453 0 EOF\n" +
		"2: -> FLOCK  ADVISORY  WRITE 77 fd:01:1846453 0 EOF\n"
	dev := uint64(0xfd<<8 | 0x01)
	if pid := findLockHolder(locks, dev, 1846453); pid != 4321 {
		t.Errorf("findLockHolder() = %d; want 4321", pid)
	}
	if pid := findLockHolder(locks, dev, 1); pid != 0 {
		t.Errorf("findLockHolder(other inode) = %d; want 0", pid)
	}
}
