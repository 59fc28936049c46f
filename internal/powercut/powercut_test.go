//go:build !arm

package powercut

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeFile writes data to name under the mount, fsyncing the file when
// syncFile is set and its directory when syncDir is set.
func writeFile(t *testing.T, path string, data []byte, syncFile, syncDir bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if syncFile {
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync %s: %v", path, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if syncDir {
		fsyncDir(t, filepath.Dir(path))
	}
}

func fsyncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync directory %s: %v", dir, err)
	}
}

func cut(t *testing.T, f *FS, mode Mode, seed uint64) Report {
	t.Helper()
	rep, err := f.Cut(mode, seed)
	if err != nil {
		t.Fatalf("Cut(%v) error = %v", mode, err)
	}
	return rep
}

// readBoth reads a file through the mount after a cut and checks that the
// backing directory holds the same.
func readBoth(t *testing.T, f *FS, name string) ([]byte, error) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(f.Mountpoint(), name))
	back, berr := os.ReadFile(filepath.Join(f.Backing(), name))
	if (err == nil) != (berr == nil) || !bytes.Equal(got, back) {
		t.Fatalf("%s through the mount (%d bytes, %v) differs from the backing file (%d bytes, %v)", name, len(got), err, len(back), berr)
	}
	return got, err
}

func pattern(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestSyncedSurvives(t *testing.T) {
	f := MountT(t)
	data := pattern('a', 3*PageSize+100)
	writeFile(t, filepath.Join(f.Mountpoint(), "kept"), data, true, true)
	rep := cut(t, f, DropAll, 1)
	got, err := readBoth(t, f, "kept")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a cut, a synced file reads %d bytes, %v; want the %d written (report %+v)", len(got), err, len(data), rep)
	}
}

func TestUnsyncedDataGone(t *testing.T) {
	f := MountT(t)
	p := filepath.Join(f.Mountpoint(), "log")
	old := pattern('o', PageSize+10)
	writeFile(t, p, old, true, true)
	a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write(pattern('n', 3*PageSize)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if fi, _ := os.Stat(p); fi.Size() != int64(len(old)+3*PageSize) {
		t.Fatalf("before the cut the file has %d bytes; want %d", fi.Size(), len(old)+3*PageSize)
	}
	rep := cut(t, f, DropAll, 1)
	got, err := readBoth(t, f, "log")
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after a cut the file holds %d bytes (%v); want only the %d synced", len(got), err, len(old))
	}
	if rep.PagesDropped == 0 {
		t.Errorf("Cut report %+v: no page dropped", rep)
	}
}

func TestUnsyncedOverwriteReverts(t *testing.T) {
	f := MountT(t)
	p := filepath.Join(f.Mountpoint(), "db")
	old := pattern('o', 4*PageSize)
	writeFile(t, p, old, true, true)
	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(pattern('n', PageSize+200), PageSize-100); err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(2 * PageSize); err != nil { // and a shrink, not synced either
		t.Fatal(err)
	}
	w.Close()
	cut(t, f, DropAll, 1)
	got, err := readBoth(t, f, "db")
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after a cut the overwritten, truncated file holds %q… (%d bytes, %v); want the old %d bytes", got[:min(len(got), 8)], len(got), err, len(old))
	}
	// Synced, the same overwrite stays.
	w, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(pattern('n', 10), 5); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	cut(t, f, DropAll, 1)
	got, _ = readBoth(t, f, "db")
	if !bytes.Equal(got[5:15], pattern('n', 10)) || len(got) != len(old) {
		t.Fatalf("a synced overwrite did not survive: % x…", got[:16])
	}
}

func TestUnsyncedRenameUndone(t *testing.T) {
	f := MountT(t)
	mnt := f.Mountpoint()
	writeFile(t, filepath.Join(mnt, "a"), []byte("file a"), true, true)
	writeFile(t, filepath.Join(mnt, "b"), []byte("file b"), true, true)
	if err := os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")); err != nil {
		t.Fatal(err)
	}
	rep := cut(t, f, DropAll, 1)
	for name, want := range map[string]string{"a": "file a", "b": "file b"} {
		got, err := readBoth(t, f, name)
		if err != nil || string(got) != want {
			t.Errorf("after a cut undid the rename, %s reads %q, %v; want %q (report %+v)", name, got, err, want, rep)
		}
	}
	// With the directory synced the rename stays.
	if err := os.Rename(filepath.Join(mnt, "a"), filepath.Join(mnt, "b")); err != nil {
		t.Fatal(err)
	}
	fsyncDir(t, mnt)
	cut(t, f, DropAll, 1)
	if _, err := readBoth(t, f, "a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after a synced rename, a: %v; want it gone", err)
	}
	if got, _ := readBoth(t, f, "b"); string(got) != "file a" {
		t.Errorf("after a synced rename, b reads %q; want %q", got, "file a")
	}
}

func TestUnsyncedCreateAndUnlinkUndone(t *testing.T) {
	f := MountT(t)
	mnt := f.Mountpoint()
	writeFile(t, filepath.Join(mnt, "old"), []byte("old"), true, true)
	writeFile(t, filepath.Join(mnt, "never-synced"), []byte("x"), false, false)
	writeFile(t, filepath.Join(mnt, "file-synced"), []byte("y"), true, false) // its directory not
	if err := os.Remove(filepath.Join(mnt, "old")); err != nil {
		t.Fatal(err)
	}
	rep := cut(t, f, DropAll, 1)
	for _, name := range []string{"never-synced", "file-synced"} {
		if _, err := readBoth(t, f, name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after a cut, %s (created, directory not synced): %v; want it gone (report %+v)", name, err, rep)
		}
	}
	if got, err := readBoth(t, f, "old"); err != nil || string(got) != "old" {
		t.Errorf("after a cut, the unlinked old reads %q, %v; want it back", got, err)
	}
	// A new file whose directory was synced but whose data was not is
	// there, empty.
	writeFile(t, filepath.Join(mnt, "dir-synced"), []byte("z"), false, true)
	cut(t, f, DropAll, 1)
	if got, err := readBoth(t, f, "dir-synced"); err != nil || len(got) != 0 {
		t.Errorf("after a cut, dir-synced reads %q, %v; want it empty", got, err)
	}
	keep, _ := os.ReadDir(f.j.keep)
	if len(keep) != 0 {
		t.Errorf("the keep directory holds %d entries after a cut; want none", len(keep))
	}
}

func TestTornCut(t *testing.T) {
	f := MountT(t)
	p := filepath.Join(f.Mountpoint(), "torn")
	const pages = 64
	oldPage := func(i int) []byte { return pattern(byte('A'+i%26), PageSize) }
	newPage := func(i int) []byte { return pattern(byte('a'+i%26), PageSize) }
	var old, upd []byte
	for i := range pages {
		old = append(old, oldPage(i)...)
		upd = append(upd, newPage(i)...)
	}
	writeFile(t, p, old, true, true)
	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(upd, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep := cut(t, f, Torn, 42)
	got, err := readBoth(t, f, "torn")
	if err != nil || len(got) != len(old) {
		t.Fatalf("after a torn cut the file reads %d bytes, %v; want %d", len(got), err, len(old))
	}
	var kept, dropped int
	for i := range pages {
		pg := got[i*PageSize : (i+1)*PageSize]
		switch {
		case bytes.Equal(pg, newPage(i)):
			kept++
		case bytes.Equal(pg, oldPage(i)):
			dropped++
		default:
			t.Fatalf("page %d after a torn cut is neither old nor new: %q…", i, pg[:8])
		}
	}
	if kept == 0 || dropped == 0 || rep.PagesKept != kept || rep.PagesDropped != dropped {
		t.Fatalf("torn cut kept %d and dropped %d pages (report %+v); want both > 0 and as reported", kept, dropped, rep)
	}
	t.Logf("torn cut of %d unsynced pages: %d kept, %d dropped", pages, kept, dropped)

	// The same seed tears the same way.
	writeFile(t, p, old, true, true)
	w, _ = os.OpenFile(p, os.O_RDWR, 0)
	if _, err := w.WriteAt(upd, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	cut(t, f, Torn, 42)
	again, _ := readBoth(t, f, "torn")
	if !bytes.Equal(again, got) {
		t.Errorf("a torn cut with the same seed tore differently")
	}
}

// mmapHelperEnv names the file TestHelperMmap maps.
const mmapHelperEnv = "OUTPOST_POWERCUT_MMAP_FILE"

// TestHelperMmap is TestMmapSeesWrites's subprocess, not a test: it maps
// a file of the mount shared and read-only, as bbolt does, writes it with
// pwrite and checks that the mapping sees each write at once, also after
// the file grew and was mapped again.
func TestHelperMmap(t *testing.T) {
	path := os.Getenv(mmapHelperEnv)
	if path == "" {
		t.Skip("the subprocess of TestMmapSeesWrites")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check := func(size int) {
		if err := f.Truncate(int64(size)); err != nil {
			t.Fatal(err)
		}
		m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap %d bytes: %v", size, err)
		}
		defer syscall.Munmap(m)
		for i, off := range []int{0, size / 2, size - 100} {
			want := []byte(fmt.Sprintf("write %d at %d of %d", i, off, size))
			if _, err := f.WriteAt(want, int64(off)); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				t.Fatal(err)
			}
			if got := m[off : off+len(want)]; !bytes.Equal(got, want) {
				t.Fatalf("the mapping reads %q at %d after a pwrite of %q", got, off, want)
			}
		}
	}
	check(4 * PageSize)
	check(64 * PageSize) // grown, mapped again
	fmt.Println("mmap ok")
}

func TestMmapSeesWrites(t *testing.T) {
	f := MountT(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMmap$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), mmapHelperEnv+"="+filepath.Join(f.Mountpoint(), "mapped"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mmap ok") {
		t.Fatalf("mmap subprocess: %v\n%s", err, out)
	}
}

// A stalled fsync waits (while reads and writes go on) until the syncs
// are resumed, and the data it synced then survives a cut.
func TestStallSyncs(t *testing.T) {
	f := MountT(t)
	p := filepath.Join(f.Mountpoint(), "stalled")
	writeFile(t, p, pattern('a', PageSize), true, true)
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt(pattern('b', PageSize), 0); err != nil {
		t.Fatal(err)
	}
	f.StallSyncs()
	done := make(chan error, 1)
	go func() { done <- w.Sync() }()
	select {
	case err := <-done:
		t.Fatalf("fsync returned (%v) while syncs were stalled", err)
	case <-time.After(300 * time.Millisecond):
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, pattern('b', PageSize)) {
		t.Fatalf("a read during the stall: %d bytes, %v; want the page written", len(got), err)
	}
	f.ResumeSyncs()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fsync after ResumeSyncs: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fsync still waiting 10s after ResumeSyncs")
	}
	w.Close()
	cut(t, f, DropAll, 1)
	if got, _ := readBoth(t, f, "stalled"); !bytes.Equal(got, pattern('b', PageSize)) {
		t.Fatalf("after the resumed fsync and a cut the file holds %q…; want the synced 'b' page", got[:min(4, len(got))])
	}
}
