//go:build !arm

// Package powercut is a test harness that simulates losing power under a
// program that writes files: a loopback FUSE file system over a backing
// directory that remembers which writes were not made durable, and a Cut
// that throws them away, leaving the backing directory as a disk would be
// after the power went. A kill -9 cannot show a missing fsync (the kernel's
// page cache survives the process); a cut here does.
//
// # What is durable
//
// The data semantics follow LazyFS (github.com/dsrhaslab/lazyfs, used by
// Jepsen): a write to a file is durable once the file is fsynced or
// fdatasynced after it; a cut (LazyFS's "clear-cache" after the process
// was killed) drops every write since the file's last sync. Beyond LazyFS
// (whose torn-op and torn-seq faults tear chosen writes of one file at a
// chosen point):
//
//   - Metadata: a file's size (truncate, extension by a write) is durable
//     with the file's fsync; a create, an unlink and a rename are durable
//     only once their directory (both directories, for a rename) is
//     fsynced. A cut undoes the rest: an unsynced new file disappears, an
//     unsynced unlink or rename is reversed, including the file a rename
//     replaced. This is the strict POSIX reading; ext4 often persists more,
//     which is luck, not a promise.
//   - Torn cuts: Cut(Torn, seed) keeps a random subset (decided by the
//     seed) of the unsynced 4 KiB pages and drops the others, as a disk
//     that wrote part of its cache does. An all-or-nothing cut only ever
//     shows loss; a torn cut also shows corruption. A file ends at its
//     durable size, or at the end of the last kept page beyond it (the
//     dropped pages in between read as zeros).
//
// Directories themselves (mkdir, rmdir) are durable at once, and hard
// links, symlinks, device nodes, O_TMPFILE, directory renames, fallocate
// and copy_file_range are refused (ENOTSUP): the journal could not undo
// them, and the programs under test do not need them.
//
// # How: an undo journal
//
// The backing directory holds the live state while the file system is
// mounted, and the journal (in memory) holds what is needed to go back to
// the durable state: before the first write to a page since the file's
// last fsync, the page's content and the file's durable size; before the
// first change to a directory since its last fsync, its listing (name →
// inode), with a hard link to each of those inodes in a keep directory
// beside the backing one, so an unlinked or replaced file can come back.
// An fsync just forgets the file's or directory's journal; nothing needs
// to reach the real disk, since the power is only ever cut here.
//
// Cut unmounts, applies the journal to the backing directory (restoring
// pages and sizes, then listings), empties the keep directory and mounts
// again, so no page cached by the kernel survives. The alternative, the
// backing directory holding only durable state and unsynced pages living
// in memory, would have to merge every read, attribute and directory
// listing; with the undo journal those are plain loopback operations, and
// the kernel's page cache and mmap work unchanged. The price: while
// mounted the backing directory holds state not yet durable, and if the
// test process dies before a cut the journal is lost with it (the backing
// directory then looks as if everything was synced).
//
// # Page cache and mmap
//
// bbolt reads its file through a shared read-only mmap and writes it with
// pwrite. Files are opened without FOPEN_KEEP_CACHE (the kernel drops its
// cache of the file at open) and without direct I/O (mmap needs the page
// cache), and without writeback caching, so a write goes through the
// kernel's cache to Write here and a mapping sees it at once. Writes
// through a shared writable mapping are not supported.
//
// # Using it
//
// The process that writes must be killed (and reaped) before a cut: a real
// power cut takes it too, and a process still mapping a file would get
// SIGBUS. The mount needs root and /dev/fuse; it uses mount(2) directly
// (no fusermount). A process must not mmap files of a mount it serves
// itself (a page fault waiting for its own stopped-for-GC server would
// deadlock), so tests run the programs that use the mount as subprocesses.
// Require skips (or fails) a test where the mount cannot work.
//
// go-fuse does not build for 32-bit ARM, so neither does this package nor
// the tests that use it (under qemu-user, where the ARM suites run, a FUSE
// mount cannot work anyway).
package powercut

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted power-cut file system.
type FS struct {
	backing    string
	mountpoint string
	j          *journal

	mu     sync.Mutex
	server *fuse.Server // nil while unmounted
	cuts   int
}

// Mount mounts a power-cut file system over backing at mountpoint. Both
// directories must exist; a keep directory is made beside backing (on its
// file system, for hard links) and removed by Unmount. Everything in
// backing at mount time counts as durable.
func Mount(backing, mountpoint string) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, fmt.Errorf("powercut: %w", err)
	}
	keep := filepath.Join(filepath.Dir(backing), "."+filepath.Base(backing)+".powercut-keep")
	if err := os.RemoveAll(keep); err != nil {
		return nil, fmt.Errorf("powercut: %w", err)
	}
	if err := os.Mkdir(keep, 0o700); err != nil {
		return nil, fmt.Errorf("powercut: %w", err)
	}
	f := &FS{backing: backing, mountpoint: mountpoint, j: newJournal(keep)}
	if err := f.mount(); err != nil {
		_ = os.RemoveAll(keep)
		return nil, err
	}
	return f, nil
}

// Mountpoint returns where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Backing returns the backing directory.
func (f *FS) Backing() string { return f.backing }

func (f *FS) mount() error {
	root, err := fs.NewLoopbackRoot(f.backing)
	if err != nil {
		return fmt.Errorf("powercut: loopback root %s: %w", f.backing, err)
	}
	lb := root.(*fs.LoopbackNode)
	n := &node{LoopbackNode: lb, j: f.j}
	lb.RootData.RootNode = n
	timeout := time.Second
	server, err := fs.Mount(f.mountpoint, n, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // mount(2) as root; there is no fusermount here
			FsName:            "powercut:" + f.backing,
			Name:              "powercut",
			DisableXAttrs:     true,
			// Writeback caching stays off: a write reaches Write (and the
			// journal) before it returns, and mappings see it at once.
		},
	})
	if err != nil {
		return fmt.Errorf("powercut: mount %s on %s: %w", f.backing, f.mountpoint, err)
	}
	f.mu.Lock()
	f.server = server
	f.mu.Unlock()
	return nil
}

func (f *FS) unmount() error {
	f.j.gate.open()
	f.mu.Lock()
	server := f.server
	f.server = nil
	f.mu.Unlock()
	if server == nil {
		return nil
	}
	var err error
	for try := 0; try < 50; try++ {
		if err = server.Unmount(); err == nil {
			server.Wait()
			return nil
		}
		time.Sleep(20 * time.Millisecond) // a killed writer's files may still be closing
	}
	f.mu.Lock()
	f.server = server
	f.mu.Unlock()
	return fmt.Errorf("powercut: unmount %s (is a process still using it?): %w", f.mountpoint, err)
}

// Cut cuts the power: it unmounts the file system, rolls the backing
// directory back to its durable state (in a torn cut keeping the unsynced
// pages the seed picks) and mounts it again. Every process using the mount
// must have exited.
func (f *FS) Cut(mode Mode, seed uint64) (Report, error) {
	if err := f.unmount(); err != nil {
		return Report{}, err
	}
	rep, err := f.j.rollback(mode, seed)
	if err != nil {
		return rep, err
	}
	f.cuts++
	return rep, f.mount()
}

// Unmount unmounts the file system, keeping the backing directory as it
// is (the journal is dropped: everything counts as synced), and removes
// the keep directory.
func (f *FS) Unmount() error {
	err := f.unmount()
	return errors.Join(err, os.RemoveAll(f.j.keep))
}
