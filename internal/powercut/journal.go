//go:build !arm

package powercut

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
)

// PageSize is the granularity at which a torn cut keeps or drops unsynced
// writes: the page of a flash translation layer or of the kernel's page
// cache.
const PageSize = 4096

// journal records, for everything changed since it was last made durable,
// what the durable state was: the undo log a cut applies. One mutex covers
// it and the backing-directory operations it brackets, so that a page's
// durable content is saved before any write to it lands.
type journal struct {
	mu    sync.Mutex
	keep  string                  // directory beside the backing one: hard links to journaled inodes
	files map[uint64]*fileJournal // by backing inode number
	dirs  map[uint64]*dirJournal  // by backing inode number of the directory
	gate  syncGate                // held shut by StallSyncs; not under mu
}

// fileJournal is a file's durable state where it differs from the backing
// file: its size at its last fsync, and the content each page had then, for
// the pages changed since.
type fileJournal struct {
	durableSize int64
	pages       map[int64][]byte // page index → durable content (short at the durable end of file)
}

// dirJournal is a directory's durable listing, taken before the first
// change to it since its last fsync: name → inode of each regular file.
type dirJournal struct {
	path    string
	entries map[string]uint64
}

func newJournal(keep string) *journal {
	return &journal{keep: keep, files: map[uint64]*fileJournal{}, dirs: map[uint64]*dirJournal{}}
}

func (j *journal) keepPath(ino uint64) string {
	return filepath.Join(j.keep, strconv.FormatUint(ino, 10))
}

// keepInode hard-links the file at path into the keep directory, so that a
// cut can reach its inode whatever names it has then.
func (j *journal) keepInode(path string, ino uint64) error {
	err := os.Link(path, j.keepPath(ino))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("powercut: keep %s: %w", path, err)
	}
	return nil
}

// file returns the journal of the file open as fd, starting one (with the
// current size as the durable size) if there is none.
func (j *journal) file(fd int, path string) (*fileJournal, uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, 0, fmt.Errorf("powercut: stat %s: %w", path, err)
	}
	if fj := j.files[st.Ino]; fj != nil {
		return fj, st.Ino, nil
	}
	if err := j.keepInode(path, st.Ino); err != nil {
		return nil, 0, err
	}
	fj := &fileJournal{durableSize: st.Size, pages: map[int64][]byte{}}
	j.files[st.Ino] = fj
	return fj, st.Ino, nil
}

// created records a file just created: nothing of it is durable.
func (j *journal) created(path string, ino uint64) error {
	if err := j.keepInode(path, ino); err != nil {
		return err
	}
	j.files[ino] = &fileJournal{pages: map[int64][]byte{}}
	return nil
}

// savePages saves the current content of the pages of [off, end) that have
// not been saved since the file's last fsync. The caller is about to change
// them.
func (fj *fileJournal) savePages(fd int, off, end int64) error {
	if end <= off {
		return nil
	}
	for p := off / PageSize; p*PageSize < end; p++ {
		if _, ok := fj.pages[p]; ok {
			continue
		}
		buf := make([]byte, PageSize)
		n, err := syscall.Pread(fd, buf, p*PageSize)
		if err != nil {
			return fmt.Errorf("powercut: save page %d: %w", p, err)
		}
		fj.pages[p] = buf[:n]
	}
	return nil
}

// synced marks everything of the file open as fd durable.
func (j *journal) synced(fd int) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("powercut: stat for fsync: %w", err)
	}
	if fj := j.files[st.Ino]; fj != nil {
		fj.durableSize = st.Size
		clear(fj.pages)
	}
	return nil
}

// dirChanging snapshots the durable listing of the directory at path before
// its first change since its last fsync.
func (j *journal) dirChanging(path string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("powercut: stat %s: %w", path, err)
	}
	if _, ok := j.dirs[st.Ino]; ok {
		return nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("powercut: list %s: %w", path, err)
	}
	dj := &dirJournal{path: path, entries: map[string]uint64{}}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("powercut: stat %s: %w", e.Name(), err)
		}
		ino := info.Sys().(*syscall.Stat_t).Ino
		if err := j.keepInode(filepath.Join(path, e.Name()), ino); err != nil {
			return err
		}
		dj.entries[e.Name()] = ino
	}
	j.dirs[st.Ino] = dj
	return nil
}

// dirSynced marks the listing of the directory open as fd durable.
func (j *journal) dirSynced(fd int) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("powercut: stat for fsync: %w", err)
	}
	delete(j.dirs, st.Ino)
	return nil
}

// Mode is the kind of power cut.
type Mode int

const (
	// DropAll drops every write and name change not made durable.
	DropAll Mode = iota
	// Torn drops the unsynced name changes and keeps a random subset of
	// the unsynced pages (chosen by the seed), dropping the rest: a disk
	// that had written some of its cache when the power went.
	Torn
)

func (m Mode) String() string {
	switch m {
	case DropAll:
		return "drop-all"
	case Torn:
		return "torn"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Report says what a cut did.
type Report struct {
	Files        int // files whose data or size was rolled back
	PagesDropped int // unsynced pages reverted to their durable content
	PagesKept    int // unsynced pages kept (torn cuts only)
	Dirs         int // directories whose listing was restored
	NamesUndone  int // names removed (unsynced creates and rename targets)
	NamesBack    int // names restored (unsynced unlinks and rename sources)
}

// rollback applies the journal to the backing directory, which nothing is
// using, and empties it.
func (j *journal) rollback(mode Mode, seed uint64) (Report, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var rep Report
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	inos := make([]uint64, 0, len(j.files))
	for ino := range j.files {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(a, b int) bool { return inos[a] < inos[b] }) // the seed decides, not map order
	for _, ino := range inos {
		fj := j.files[ino]
		n, k, err := j.rollbackFile(j.keepPath(ino), fj, mode, rng)
		if err != nil {
			return rep, err
		}
		rep.Files++
		rep.PagesDropped += n
		rep.PagesKept += k
	}
	for _, dj := range j.dirs {
		undone, back, err := rollbackDir(dj, j)
		if err != nil {
			return rep, err
		}
		rep.Dirs++
		rep.NamesUndone += undone
		rep.NamesBack += back
	}
	if err := os.RemoveAll(j.keep); err != nil {
		return rep, fmt.Errorf("powercut: remove %s: %w", j.keep, err)
	}
	if err := os.Mkdir(j.keep, 0o700); err != nil {
		return rep, fmt.Errorf("powercut: %w", err)
	}
	clear(j.files)
	clear(j.dirs)
	return rep, nil
}

// rollbackFile gives the file its durable size and puts back the durable
// content of its changed pages, except, in a torn cut, those the dice keep.
// The file ends at its durable size, or at the end of the last page kept
// beyond it.
func (j *journal) rollbackFile(path string, fj *fileJournal, mode Mode, rng *rand.Rand) (dropped, kept int, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("powercut: roll back %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("powercut: roll back %s: %w", path, err)
	}
	cur := fi.Size()
	pages := make([]int64, 0, len(fj.pages))
	for p := range fj.pages {
		pages = append(pages, p)
	}
	sort.Slice(pages, func(a, b int) bool { return pages[a] < pages[b] })
	keep := map[int64]bool{}
	size := fj.durableSize
	for _, p := range pages {
		if mode == Torn && rng.IntN(2) == 0 {
			keep[p] = true
			size = max(size, min(cur, (p+1)*PageSize))
		}
	}
	if err := f.Truncate(size); err != nil {
		return 0, 0, fmt.Errorf("powercut: roll back %s: %w", path, err)
	}
	for _, p := range pages {
		if keep[p] {
			kept++
			continue
		}
		dropped++
		start := p * PageSize
		if start >= size {
			continue
		}
		// The durable content up to the durable end of file, zeros
		// after it (a page that only a kept later page brought back in).
		old := fj.pages[p]
		old = old[:max(0, min(int64(len(old)), fj.durableSize-start))]
		buf := make([]byte, min(PageSize, size-start))
		copy(buf, old)
		if _, err := f.WriteAt(buf, start); err != nil {
			return 0, 0, fmt.Errorf("powercut: roll back %s page %d: %w", path, p, err)
		}
	}
	return dropped, kept, nil
}

// rollbackDir gives a directory its durable listing of regular files:
// every current one goes, every durable one comes back from the keep
// directory.
func rollbackDir(dj *dirJournal, j *journal) (undone, back int, err error) {
	ents, err := os.ReadDir(dj.path)
	if err != nil {
		return 0, 0, fmt.Errorf("powercut: roll back %s: %w", dj.path, err)
	}
	current := map[string]uint64{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return 0, 0, fmt.Errorf("powercut: roll back %s: %w", dj.path, err)
		}
		current[e.Name()] = info.Sys().(*syscall.Stat_t).Ino
	}
	for name, ino := range current {
		if dj.entries[name] == ino {
			continue
		}
		if err := os.Remove(filepath.Join(dj.path, name)); err != nil {
			return 0, 0, fmt.Errorf("powercut: roll back %s: %w", dj.path, err)
		}
		undone++
	}
	for name, ino := range dj.entries {
		if current[name] == ino {
			continue
		}
		if err := os.Link(j.keepPath(ino), filepath.Join(dj.path, name)); err != nil {
			return 0, 0, fmt.Errorf("powercut: roll back %s: %w", dj.path, err)
		}
		back++
	}
	return undone, back, nil
}
