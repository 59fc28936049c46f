//go:build !arm

package powercut

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node whose changing operations go through the
// journal. Lookups, attributes, directory reads and the like are the
// loopback's own; operations whose effect the journal could not undo
// (hard links, symlinks, device nodes, O_TMPFILE, directory renames,
// fallocate, copy_file_range) are refused with ENOTSUP.
type node struct {
	*fs.LoopbackNode
	j *journal
}

// Interface guards.
var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.FileReader         = (*file)(nil)
	_ fs.FileWriter         = (*file)(nil)
	_ fs.FileFsyncer        = (*file)(nil)
	_ fs.FileFlusher        = (*file)(nil)
	_ fs.FileReleaser       = (*file)(nil)
	_ fs.FileGetattrer      = (*file)(nil)
	_ fs.FileLseeker        = (*file)(nil)
	_ fs.FileAllocater      = (*file)(nil)
	_ fs.FileReaddirenter   = (*dir)(nil)
	_ fs.FileSeekdirer      = (*dir)(nil)
	_ fs.FileReleasedirer   = (*dir)(nil)
	_ fs.FileFsyncdirer     = (*dir)(nil)
)

// WrapChild makes every node below the root one of ours.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), j: n.j}
}

// backing is the node's path in the backing directory.
func (n *node) backing() string {
	return filepath.Join(n.RootData.Path, n.Path(nil))
}

// backingFlags turns open flags into those of the backing descriptor:
// always read-write (the journal reads pages before writes land; the
// kernel enforces the caller's access mode), never truncating (the
// journal does that), appending or direct.
func backingFlags(flags uint32) int {
	f := int(flags) &^ (syscall.O_ACCMODE | syscall.O_TRUNC | syscall.O_APPEND | syscall.O_CREAT |
		syscall.O_EXCL | syscall.O_DIRECT | fuse.FMODE_EXEC)
	return f | syscall.O_RDWR | syscall.O_CLOEXEC
}

// Open opens the backing file. The handle keeps the kernel's page cache
// consistent by the default FUSE behaviour: no FOPEN_KEEP_CACHE (the cache
// is dropped at open), no direct I/O (so a shared mmap works), and writes
// go through the kernel's cache to Write, which updates both.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p := n.backing()
	fd, err := syscall.Open(p, backingFlags(flags), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	f := &file{fd: fd, path: p, j: n.j}
	if flags&syscall.O_TRUNC != 0 {
		if errno := f.truncate(0); errno != 0 {
			syscall.Close(fd)
			return nil, 0, errno
		}
	}
	return f, 0, 0
}

// Create creates a file that is not durable until its directory is
// synced (its name) and it is synced (its content).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.j.mu.Lock()
	defer n.j.mu.Unlock()
	dirPath := n.backing()
	if err := n.j.dirChanging(dirPath); err != nil {
		return nil, nil, 0, syscall.EIO
	}
	ch, lf, _, errno := n.LoopbackNode.Create(ctx, name, flags|syscall.O_EXCL, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if r, ok := lf.(fs.FileReleaser); ok {
		r.Release(ctx) // replaced by a handle of ours
	}
	p := filepath.Join(dirPath, name)
	fd, err := syscall.Open(p, backingFlags(flags), 0)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, fs.ToErrno(err)
	}
	if err := n.j.created(p, st.Ino); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, syscall.EIO
	}
	return ch, &file{fd: fd, path: p, j: n.j}, 0, 0
}

// Unlink removes a name, which comes back at a cut unless the directory
// was synced after.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.j.mu.Lock()
	defer n.j.mu.Unlock()
	dirPath := n.backing()
	if err := n.j.dirChanging(dirPath); err != nil {
		return syscall.EIO
	}
	return fs.ToErrno(syscall.Unlink(filepath.Join(dirPath, name)))
}

// Rename moves a file; a cut undoes it unless both directories were
// synced after. Directories cannot be renamed, nor can RENAME_EXCHANGE or
// RENAME_WHITEOUT be used.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || flags&^uint32(unix.RENAME_NOREPLACE) != 0 {
		return syscall.ENOTSUP
	}
	n.j.mu.Lock()
	defer n.j.mu.Unlock()
	from := filepath.Join(n.backing(), name)
	to := filepath.Join(np.backing(), newName)
	var st syscall.Stat_t
	if err := syscall.Lstat(from, &st); err != nil {
		return fs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return syscall.ENOTSUP
	}
	if flags&uint32(unix.RENAME_NOREPLACE) != 0 {
		if err := syscall.Lstat(to, &st); err == nil {
			return syscall.EEXIST
		}
	}
	if err := n.j.dirChanging(n.backing()); err != nil {
		return syscall.EIO
	}
	if err := n.j.dirChanging(np.backing()); err != nil {
		return syscall.EIO
	}
	return fs.ToErrno(syscall.Rename(from, to))
}

// Setattr journals a size change; the rest is the loopback's.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		fh, _ := f.(*file)
		if fh == nil {
			fd, err := syscall.Open(n.backing(), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
			if err != nil {
				return fs.ToErrno(err)
			}
			defer syscall.Close(fd)
			fh = &file{fd: fd, path: n.backing(), j: n.j}
		}
		if errno := fh.truncate(int64(sz)); errno != 0 {
			return errno
		}
		rest := *in
		rest.Valid &^= fuse.FATTR_SIZE
		in = &rest
	}
	var lf fs.FileHandle
	if fh, ok := f.(*file); ok {
		lf = fh.getattrOnly()
	}
	return n.LoopbackNode.Setattr(ctx, lf, in, out)
}

// OpendirHandle wraps the loopback's directory stream so that fsync of the
// directory reaches the journal.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ds, errno := fs.NewLoopbackDirStream(n.backing())
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{ds: ds, path: n.backing(), j: n.j}, 0, 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle,
	offOut uint64, l uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// file is an open file: a read-write descriptor of the backing file.
type file struct {
	fd   int
	path string
	j    *journal
}

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := syscall.Pread(f.fd, buf, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

// Write saves the durable content of the pages it changes, then writes.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.j.mu.Lock()
	defer f.j.mu.Unlock()
	fj, _, err := f.j.file(f.fd, f.path)
	if err != nil {
		return 0, syscall.EIO
	}
	if err := fj.savePages(f.fd, off, off+int64(len(data))); err != nil {
		return 0, syscall.EIO
	}
	n, err := syscall.Pwrite(f.fd, data, off)
	return uint32(n), fs.ToErrno(err)
}

// truncate saves the pages a shrinking file loses, then truncates.
func (f *file) truncate(size int64) syscall.Errno {
	f.j.mu.Lock()
	defer f.j.mu.Unlock()
	fj, _, err := f.j.file(f.fd, f.path)
	if err != nil {
		return syscall.EIO
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(f.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	if err := fj.savePages(f.fd, size, st.Size); err != nil {
		return syscall.EIO
	}
	return fs.ToErrno(syscall.Ftruncate(f.fd, size))
}

// Fsync (and fdatasync) make the file's content and size durable. Nothing
// needs to reach the backing disk: the power is only ever cut here.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !f.j.gate.wait(ctx) {
		return syscall.EINTR
	}
	f.j.mu.Lock()
	defer f.j.mu.Unlock()
	if err := f.j.synced(f.fd); err != nil {
		return syscall.EIO
	}
	return 0
}

func (f *file) Flush(ctx context.Context) syscall.Errno { return 0 }

func (f *file) Release(ctx context.Context) syscall.Errno {
	return fs.ToErrno(syscall.Close(f.fd))
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(f.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := syscall.Seek(f.fd, int64(off), int(whence))
	return uint64(n), fs.ToErrno(err)
}

func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	return syscall.ENOTSUP
}

// getattrOnly is the handle as the loopback's Setattr may see it: one that
// can report attributes but not set them behind the journal.
func (f *file) getattrOnly() fs.FileHandle { return attrFile{f} }

type attrFile struct{ f *file }

func (a attrFile) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return a.f.Getattr(ctx, out)
}

// dir is an open directory.
type dir struct {
	ds   fs.DirStream
	path string
	j    *journal
}

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	d.ds.Close()
}

// Fsyncdir makes the directory's listing durable.
func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	fd, err := syscall.Open(d.path, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	if !d.j.gate.wait(ctx) {
		return syscall.EINTR
	}
	d.j.mu.Lock()
	defer d.j.mu.Unlock()
	if err := d.j.dirSynced(fd); err != nil {
		return syscall.EIO
	}
	return 0
}
