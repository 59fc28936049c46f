package spool

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/record"
)

// The benchmark workload is what the sim driver produces: 4 series
// ("bench.s0"–"bench.s3", unit C), values rounded to 0.01, one reading per
// 100 ms, boot clock known, no labels.
var (
	benchStart   = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	benchSensors = [4]string{"bench.s0", "bench.s1", "bench.s2", "bench.s3"}
	benchBoot    = BootID{0x0f, 0x3e, 0x4a, 0x52, 0x9b, 0x1c, 0x4d, 0x2e, 0x8f, 0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc}
)

// benchReading returns reading i and its boot time in benchBoot.
func benchReading(i int) (reading.Reading, time.Duration) {
	d := time.Duration(i) * 100 * time.Millisecond
	v := math.Round((20+5*math.Sin(float64(i)/600)+float64(i%4))*100) / 100
	return reading.Reading{Sensor: benchSensors[i%4], Value: v, Unit: "C", Time: benchStart.Add(d)},
		30*time.Second + d
}

// procIO returns the bytes this process handed to write/pwrite so far
// (/proc/self/io wchar): what bbolt writes, page by page.
func procIO(tb testing.TB) uint64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Skipf("no /proc/self/io: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	tb.Skip("no wchar in /proc/self/io")
	return 0
}

// devSectors returns the sectors written to the block device that holds
// dir (/sys/dev/block/MAJ:MIN/stat, seventh field), or false where the
// kernel does not say (tmpfs, overlay).
func devSectors(dir string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[6], 10, 64)
	return n, err == nil
}

// reportDevBytes reports the bytes that reached the block device per
// reading while the loop ran (sectors from s0 on, over elapsed). On the
// shared disk what the device took in an idle spell of the same length
// right after is subtracted: other tenants write to it too (measuring.md).
func reportDevBytes(b *testing.B, d benchDisk, s0 uint64, ok bool, elapsed time.Duration, n int) {
	s1, ok1 := d.sectors(b)
	if !ok || !ok1 || n == 0 {
		return
	}
	if d.private {
		b.ReportMetric(float64(s1-s0)*512/float64(n), "devB/reading")
		return
	}
	time.Sleep(elapsed)
	s2, _ := devSectors(d.dir)
	busy, idle := s1-s0, s2-s1
	b.ReportMetric(float64(max(busy, idle)-idle)*512/float64(n), "devB/reading")
	b.ReportMetric(float64(idle)*512/float64(n), "idle-devB/reading")
}

// benchDisk is where a lifecycle benchmark keeps its spool.
type benchDisk struct {
	dir     string
	private bool // a loop-mounted ext4 of its own, which nobody else writes to
}

// sectors returns the sectors written to d's block device so far. A
// private disk is synced first, so that what ext4 still holds in its
// journal is counted where it was caused.
func (d benchDisk) sectors(b *testing.B) (uint64, bool) {
	if d.private {
		syncFS(b, d.dir)
	}
	return devSectors(d.dir)
}

// newBenchDisk returns, as root, a fresh ext4 file system (mkfs.ext4's
// defaults) on a loop device of the benchmark's own, mounted with
// mountOpts ("" for the defaults): its block device counts this
// benchmark's writes alone, ext4's journal included. Elsewhere, or if the
// mount fails, it returns a temporary directory on the shared disk and
// says why; with mountOpts set it skips instead, since the options would
// not apply (or fails, with OUTPOST_REQUIRE_SERVICES=1).
func newBenchDisk(b *testing.B, mountOpts string) benchDisk {
	dir := b.TempDir()
	why := privateExt4(b, dir, mountOpts)
	if why == "" {
		return benchDisk{dir: filepath.Join(dir, "mnt"), private: true}
	}
	if mountOpts != "" {
		cannotRun(b, fmt.Sprintf("no private ext4 mounted with %s: %s", mountOpts, why))
	}
	b.Logf("spool on the shared disk, less an idle spell: no private ext4 (%s)", why)
	return benchDisk{dir: dir}
}

// privateExt4 makes a 256 MiB ext4 image in dir and mounts it on dir/mnt,
// unmounted when the benchmark ends. It returns why not, or "". The inode
// tables and journal are initialised by mkfs, not lazily after the mount,
// so that no background zeroing is counted as the benchmark's.
func privateExt4(b *testing.B, dir, mountOpts string) string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	img, mnt := filepath.Join(dir, "ext4.img"), filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return err.Error()
	}
	if err := os.Truncate(img, 256<<20); err != nil {
		return err.Error()
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err.Error()
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img).CombinedOutput(); err != nil {
		return fmt.Sprintf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	opts := "loop"
	if mountOpts != "" {
		opts += "," + mountOpts
	}
	if out, err := exec.Command("mount", "-o", opts, img, mnt).CombinedOutput(); err != nil {
		return fmt.Sprintf("mount -o %s: %v: %s", opts, err, strings.TrimSpace(string(out)))
	}
	b.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			b.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return ""
}

// syncFS commits the file system holding dir, journal included.
func syncFS(b *testing.B, dir string) {
	f, err := os.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		b.Fatalf("syncfs %s: %v", dir, err)
	}
}

func benchOptions(tb testing.TB, dir string) Options {
	opts := testOptions(dir)
	opts.CommitInterval = time.Hour // the benchmarks commit with Flush
	opts.CommitReadings = DefaultMaxBufferedReadings
	opts.Boot = benchBoot
	return opts
}

// BenchmarkAppend measures appends committed in batches of 1, 100 and 1000
// readings (one fsynced transaction each), against raw bbolt puts of
// 64-byte values in transactions of the same size, default options, in the
// same run. ns/op is per reading.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d/spool", batch), func(b *testing.B) { benchSpoolAppend(b, batch) })
		b.Run(fmt.Sprintf("batch=%d/bolt", batch), func(b *testing.B) { benchBoltAppend(b, batch) })
	}
}

func benchSpoolAppend(b *testing.B, batch int) {
	opts := benchOptions(b, b.TempDir())
	if batch == 1 {
		opts.CommitInterval = 0
	}
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	w0 := procIO(b)
	b.ResetTimer()
	for i := range b.N {
		r, c := benchReading(i)
		if _, err := s.Append(ctx, r, c); err != nil {
			b.Fatal(err)
		}
		if batch > 1 && (i+1)%batch == 0 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st, _ := s.Stats()
	b.ReportMetric(float64(procIO(b)-w0)/float64(b.N), "wB/reading")
	b.ReportMetric(2*float64(st.Commits)/float64(b.N), "fsyncs/reading")
}

func benchBoltAppend(b *testing.B, batch int) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	name := []byte("outbox")
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(name); return err }); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 64)
	commits := 0
	w0 := procIO(b)
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(name)
			for j := i; j < min(i+batch, b.N); j++ {
				if err := bk.Put(record.Itob(uint64(j+1)), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		commits++
	}
	b.StopTimer()
	b.ReportMetric(float64(procIO(b)-w0)/float64(b.N), "wB/reading")
	b.ReportMetric(2*float64(commits)/float64(b.N), "fsyncs/reading")
}

// BenchmarkLifecycle measures the disk bytes written per reading over its
// whole life (append, read, acknowledge), per reading:
//
//	10-per-commit: 10 readings/s with 1 s commits; each commit carries the
//	  appends of that second and the acks of the batch sent the second before
//	backlog-600: the same while the link lags: acks 60 commits behind
//	1000-per-commit: full speed, acks one commit behind
//	naive: raw bbolt, one transaction per reading and one per delete
//	10-per-second: 10-per-commit at the daemon's real pace, one commit a
//	  second for realPaceCommits seconds whatever b.N (ns/op means nothing
//	  there), so that ext4's own periodic journal commits (every 5 s by
//	  default: the file's timestamps) are counted; on ext4's defaults and
//	  mounted with commit=60
//
// As root each runs on a private ext4 on a loop device (newBenchDisk), so
// devB/reading is this benchmark's alone.
func BenchmarkLifecycle(b *testing.B) {
	b.Run("10-per-commit", func(b *testing.B) { benchLifecycle(b, newBenchDisk(b, ""), 10, 1, 0) })
	b.Run("backlog-600", func(b *testing.B) { benchLifecycle(b, newBenchDisk(b, ""), 10, 60, 0) })
	b.Run("1000-per-commit", func(b *testing.B) { benchLifecycle(b, newBenchDisk(b, ""), 1000, 1, 0) })
	b.Run("naive", benchNaiveLifecycle)
	b.Run("10-per-second/ext4=defaults", func(b *testing.B) { benchLifecycle(b, newBenchDisk(b, ""), 10, 1, time.Second) })
	b.Run("10-per-second/ext4=commit60", func(b *testing.B) {
		benchLifecycle(b, newBenchDisk(b, "commit=60"), 10, 1, time.Second)
	})
}

// realPaceCommits is how many commits the real-pace variants make.
const realPaceCommits = 20

// benchLifecycle appends perCommit readings per commit and acknowledges
// each batch lag commits later: b.N readings as fast as it can, or with
// pace set, realPaceCommits commits pace apart.
func benchLifecycle(b *testing.B, d benchDisk, perCommit, lag int, pace time.Duration) {
	dir := d.dir
	s, err := Open(benchOptions(b, dir))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	var inFlight []*reading.Batch
	i := 0
	step := func() {
		for range perCommit {
			r, c := benchReading(i)
			if _, err := s.Append(ctx, r, c); err != nil {
				b.Fatal(err)
			}
			i++
		}
		if bt, err := s.Next(perCommit, 1<<30); err != nil {
			b.Fatal(err)
		} else if bt != nil {
			inFlight = append(inFlight, bt)
		}
		if len(inFlight) >= lag {
			if err := s.Ack(inFlight[0]); err != nil {
				b.Fatal(err)
			}
			inFlight = inFlight[1:]
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for range lag + 1 { // reach the steady state first
		step()
	}
	st0, _ := s.Stats()
	w0 := procIO(b)
	sec0, devOK := d.sectors(b)
	start := time.Now()
	b.ResetTimer()
	n := 0
	if pace > 0 {
		tick := time.NewTicker(pace)
		for range realPaceCommits {
			<-tick.C
			step()
			n += perCommit
		}
		tick.Stop()
	} else {
		for n < b.N {
			step()
			n += perCommit
		}
	}
	b.StopTimer()
	st, _ := s.Stats()
	b.ReportMetric(float64(procIO(b)-w0)/float64(n), "wB/reading")
	b.ReportMetric(2*float64(st.Commits-st0.Commits)/float64(n), "fsyncs/reading")
	reportDevBytes(b, d, sec0, devOK, time.Since(start), n)
}

func benchNaiveLifecycle(b *testing.B) {
	d := newBenchDisk(b, "")
	dir := d.dir
	db, err := bolt.Open(filepath.Join(dir, "naive.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	name := []byte("outbox")
	val := make([]byte, 64)
	put := func(seq uint64) error {
		return db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			return bk.Put(record.Itob(seq), val)
		})
	}
	del := func(seq uint64) error {
		return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(name).Delete(record.Itob(seq)) })
	}
	if err := put(1); err != nil {
		b.Fatal(err)
	}
	w0 := procIO(b)
	sec0, devOK := d.sectors(b)
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		if err := put(uint64(i + 2)); err != nil {
			b.Fatal(err)
		}
		if err := del(uint64(i + 1)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(procIO(b)-w0)/float64(b.N), "wB/reading")
	b.ReportMetric(4, "fsyncs/reading")
	reportDevBytes(b, d, sec0, devOK, time.Since(start), b.N)
}

// BenchmarkAtRest appends b.N readings (commits of 1000) and reports the
// file and logical bytes per stored reading, beside raw bbolt with 64-byte
// values and default settings.
func BenchmarkAtRest(b *testing.B) {
	b.Run("spool", func(b *testing.B) {
		opts := benchOptions(b, b.TempDir())
		opts.MaxBytes = DefaultMaxBytes
		s, err := Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for i := range b.N {
			r, c := benchReading(i)
			if _, err := s.Append(ctx, r, c); err != nil {
				b.Fatal(err)
			}
			if (i+1)%1000 == 0 {
				if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st := fileStats(b, opts)
		b.ReportMetric(float64(st.FileSize)/float64(b.N), "file-B/reading")
		b.ReportMetric(float64(st.Bytes)/float64(b.N), "logical-B/reading")
	})
	b.Run("bolt", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "raw.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		val := make([]byte, 64)
		for i := 0; i < b.N; i += 1000 {
			err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("outbox"))
				if err != nil {
					return err
				}
				for j := i; j < min(i+1000, b.N); j++ {
					if err := bk.Put(record.Itob(uint64(j+1)), val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		db.Close()
		b.StopTimer()
		fi, _ := os.Stat(path)
		b.ReportMetric(float64(fi.Size())/float64(b.N), "file-B/reading")
	})
}

// fileStats reopens a closed spool for its stats.
func fileStats(tb testing.TB, opts Options) Stats {
	s, err := Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close(context.Background())
	st, err := s.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// benchFiles holds spools built once per process for the open and memory
// benchmarks, keyed by reading count.
var benchFiles struct {
	sync.Mutex
	dir   string
	paths map[int]string
}

// benchSpoolFile returns the path of a closed spool of n readings, built on
// first use (commits of 10000, unsynced: only the result matters).
func benchSpoolFile(b *testing.B, n int) string {
	benchFiles.Lock()
	defer benchFiles.Unlock()
	if p, ok := benchFiles.paths[n]; ok {
		return p
	}
	if benchFiles.dir == "" {
		d, err := os.MkdirTemp("", "outpost-spool-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchFiles.dir, benchFiles.paths = d, map[int]string{}
	}
	opts := benchOptions(b, filepath.Join(benchFiles.dir, strconv.Itoa(n)))
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		b.Fatal(err)
	}
	opts.UnsafeNoSync = true
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		r, c := benchReading(i)
		if _, err := s.Append(ctx, r, c); err != nil {
			b.Fatal(err)
		}
		if (i+1)%10000 == 0 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
	benchFiles.paths[n] = opts.Path
	return opts.Path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchFiles.dir != "" {
		os.RemoveAll(benchFiles.dir)
	}
	os.Exit(code)
}

// BenchmarkOpen opens a spool holding 1M readings, warm (file in the page
// cache) and cold (its pages dropped with POSIX_FADV_DONTNEED first), after
// a clean Close (which writes bbolt's freelist, so the open reads it) and
// after a crash (the last commit left no freelist: bbolt walks every page
// to rebuild it). The bolt baseline is bbolt.Open of the crashed file with
// the same options. ns/op is one Open.
func BenchmarkOpen(b *testing.B) {
	clean := benchSpoolFile(b, 1_000_000)
	crashed := filepath.Join(b.TempDir(), "crashed", "spool.db")
	if err := os.MkdirAll(filepath.Dir(crashed), 0o700); err != nil {
		b.Fatal(err)
	}
	copyFile(b, clean, crashed)
	db, err := bolt.Open(crashed, 0o600, &bolt.Options{PageSize: record.PageSize, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return record.PutU64(tx.Bucket(record.BucketMeta), record.KeyFormat, FormatVersion)
	}); err != nil {
		b.Fatal(err)
	}
	db.Close() // no freelist written: as after a kill
	// bolt-array: the same with bbolt's array freelist, which the spool
	// does not use (the walk of the file dominates either way).
	for _, fl := range []struct {
		name string
		typ  bolt.FreelistType
	}{{"bolt", bolt.FreelistMapType}, {"bolt-array", bolt.FreelistArrayType}} {
		b.Run("readings=1M/after-crash/warm/"+fl.name, func(b *testing.B) {
			for range b.N {
				db, err := bolt.Open(crashed, 0o600, &bolt.Options{PageSize: record.PageSize, NoFreelistSync: true, FreelistType: fl.typ})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				db.Close()
				b.StartTimer()
			}
		})
	}
	for _, c := range []struct {
		name  string
		path  string
		cold  bool
		crash bool
	}{
		{"readings=1M/after-close/warm/spool", clean, false, false},
		{"readings=1M/after-close/cold/spool", clean, true, false},
		{"readings=1M/after-crash/warm/spool", crashed, false, true},
		{"readings=1M/after-crash/cold/spool", crashed, true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			opts := benchOptions(b, filepath.Dir(c.path))
			for range b.N {
				b.StopTimer()
				if c.crash {
					// The previous Close wrote the freelist: remove it again
					// (one empty commit without it).
					db, err := bolt.Open(c.path, 0o600, &bolt.Options{PageSize: record.PageSize, NoFreelistSync: true})
					if err != nil {
						b.Fatal(err)
					}
					db.Update(func(tx *bolt.Tx) error {
						return record.PutU64(tx.Bucket(record.BucketMeta), record.KeyFormat, FormatVersion)
					})
					db.Close()
				}
				if c.cold {
					dropCache(b, c.path)
				}
				b.StartTimer()
				s, err := Open(opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if st, _ := s.Stats(); st.Readings != 1_000_000 {
					b.Fatalf("spool holds %d readings", st.Readings)
				}
				s.Close(context.Background())
				b.StartTimer()
			}
		})
	}
}

func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Skipf("fadvise: %v", err)
	}
}

// drainEnv names the spool file the drain-memory helper process drains.
const drainEnv = "OUTPOST_SPOOL_DRAIN"

// TestHelperDrain is BenchmarkDrainMemory's process, not a test: it drains
// and acknowledges the whole spool as an uplink would (batches of 500,
// 256 KiB, 4 in flight, a commit per 8 acks), sampling its anonymous
// memory, and prints the peak.
func TestHelperDrain(t *testing.T) {
	path := os.Getenv(drainEnv)
	if path == "" {
		t.Skip("the drain process of BenchmarkDrainMemory")
	}
	s, err := Open(Options{Path: path, Device: "pi-07", CommitInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	opened := rssAnon()
	stopSampling := samplePeak(rssAnon, 5*time.Millisecond)
	acks := 0
	start := time.Now()
	drained := drainAcking(t, s, func() {
		// An uplink waits for the network; here a commit every 8 acks
		// stands in for that pace (at full speed the acks' own early
		// commits bound each commit's deletes, as TestDrainMemoryIsFlat
		// drains).
		if acks++; acks%8 == 0 {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	peak := stopSampling()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("drained %d peak-anon-kib %d seconds %.3f opened-anon-kib %d heap-sys-kib %d\n",
		drained, peak, time.Since(start).Seconds(), opened, ms.HeapSys>>10)
}

// rssAnon returns RssAnon of /proc/self/status in KiB.
func rssAnon() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkDrainMemory drains and acknowledges a backlog of 100k and of
// 1M readings in a fresh process each and reports its peak anonymous
// memory (RssAnon: heap and stacks, not bbolt's file-backed mmap).
func BenchmarkDrainMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("readings=%dk", n/1000), func(b *testing.B) {
			src := benchSpoolFile(b, n)
			for range b.N {
				b.StopTimer()
				dst := filepath.Join(b.TempDir(), "spool.db")
				copyFile(b, src, dst)
				b.StartTimer()
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDrain$", "-test.count=1")
				cmd.Env = append(os.Environ(), drainEnv+"="+dst)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("drain process: %v\n%s", err, out)
				}
				var drained, peak, opened, heap uint64
				var secs float64
				sc := bufio.NewScanner(strings.NewReader(string(out)))
				for sc.Scan() {
					if _, err := fmt.Sscanf(sc.Text(), "drained %d peak-anon-kib %d seconds %f opened-anon-kib %d heap-sys-kib %d",
						&drained, &peak, &secs, &opened, &heap); err == nil {
						break
					}
				}
				if drained != uint64(n) {
					b.Fatalf("drain process drained %d of %d readings:\n%s", drained, n, out)
				}
				b.ReportMetric(float64(peak), "peak-anon-KiB")
				b.ReportMetric(float64(opened), "opened-anon-KiB")
				b.ReportMetric(float64(heap), "heap-sys-KiB")
				b.ReportMetric(secs, "drain-s")
			}
		})
	}
}

func copyFile(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}
