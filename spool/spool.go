package spool

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool/boltfile"
	"github.com/outpost-iot/outpost/spool/journal"
	"github.com/outpost-iot/outpost/spool/record"
)

// Spool is an open spool file. Its methods are safe for concurrent use.
type Spool struct {
	opts Options
	log  *slog.Logger

	// dbMu guards db and tab, which a quarantine or a compaction
	// replaces; read transactions hold it for reading.
	dbMu sync.RWMutex
	db   *bolt.DB
	tab  *record.Table

	// writeMu serialises the writer's commits, quarantines and
	// compactions with other write transactions (salvage), which share
	// the names table.
	//
	// Lock order: writeMu, dbMu, drainMu, mu; the names table's own lock
	// (tab.RLock) is taken last, never with mu held.
	writeMu sync.Mutex

	drainMu   sync.Mutex
	cursor    map[reading.StreamID]uint64 // next seq to hand out, per stream
	handed    map[rangeKey]uint64         // pending ranges handed out: → to
	resent    map[reading.StreamID][]seqRange
	fresh     map[reading.StreamID]seqRange // handed out newest-first by NextFresh
	bounds    []int                         // by series id of boundsTab: lineBound's cache
	boundsTab *record.Table                 // the table bounds was made for

	mu         sync.Mutex
	closed     bool
	stream     reading.StreamID // the live stream
	streams    []record.Stream  // oldest first
	nextSeq    uint64           // next seq to assign in the live stream
	buf        []pending        // appended, not committed, seq order
	inCommit   int              // buf[:inCommit] is being committed
	bufDropped []seqRange       // live seqs dropped from buf, not yet recorded
	acks       []ackOp
	ackWaiting int // readings in acks (acknowledged, not taken by a commit yet)
	ops        []*op
	counters   record.Counters // as last committed
	committed  uint64          // live seq high-water mark as last committed
	failing    bool
	failures   int
	lastErr    error
	lastAge    time.Time     // last max-age check
	gen        uint64        // commits started
	doneGen    uint64        // commits finished
	doneErr    error         // error of commit doneGen
	okGen      uint64        // the last commit that succeeded
	commitCh   chan struct{} // closed and replaced after each commit
	writerDone bool
	dropping   bool   // the cap is dropping readings (for logging changes)
	outOfSpace bool   // the disk is full (space.go)
	refuse     bool   // reject_new on a full disk: Append refuses
	rejected   uint64 // appends refused with ErrFull since Open
	space      space  // the writer's view of the disk

	// jr is the pre-commit journal (journaling.go), nil when it could not
	// be opened; jbuf is the scratch its records are encoded in.
	jr          *journal.Journal
	jbuf        []byte
	jrFailing   bool        // a journal write failed since the last reset
	ackTimer    *time.Timer // kicks the writer ackCommitDelay after acks began to wait
	ackTimerSet bool

	corrupt     atomic.Bool   // a reader saw corruption; the writer quarantines
	commits     atomic.Uint64 // successful commits since Open
	compactions atomic.Uint64 // since Open

	// commitHook, set by tests before the first commit, runs inside every
	// commit transaction (to inject a bbolt panic).
	commitHook func()
	kick       chan struct{}
	notify     chan struct{}
	stop       chan struct{}
	done       chan struct{}
}

// pending is an appended reading waiting for its commit, with
// CLOCK_BOOTTIME when it was taken in the boot Options.Boot (0: unknown).
type pending struct {
	r        reading.Reading
	bootTime time.Duration
	seq      uint64
}

// seqRange is the seqs from–to of a stream, both included.
type seqRange struct{ from, to uint64 }

type rangeKey struct {
	stream reading.StreamID
	from   uint64
}

// FormatVersion is the version of the file format this release writes
// (package record describes it). Files of an older version are read; a
// newer one is refused with ErrNewerFormat.
const FormatVersion = record.FormatVersion

// Open opens (or creates) the spool file at opts.Path and starts its
// writer. A file that cannot be read as a spool is quarantined: renamed to
// Path.quarantined-<UTC time> and replaced by a new spool with a new
// stream. A file of a newer format is refused with ErrNewerFormat; a file
// locked by another process beyond opts.LockTimeout with ErrLocked.
func Open(opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Spool{
		opts:     opts,
		log:      opts.Logger,
		cursor:   map[reading.StreamID]uint64{},
		handed:   map[rangeKey]uint64{},
		resent:   map[reading.StreamID][]seqRange{},
		fresh:    map[reading.StreamID]seqRange{},
		commitCh: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		notify:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.space.noFallocate = opts.noFallocate
	if err := s.openFile(0); err != nil {
		return nil, err
	}
	s.openJournal()
	go s.run()
	return s, nil
}

// openFile opens the file, quarantining it when it is unreadable, and
// loads its state. quarantined is the count carried from a file that was
// just quarantined at run time.
func (s *Spool) openFile(quarantined uint64) error {
	path := s.opts.Path
	_ = os.Remove(compactPath(path)) // a compaction's leftover
	died := beginOpen(path)
	err := boltfile.Check(path, died > 0, s.opts.LockTimeout)
	if err != nil {
		err = fmt.Errorf("spool: %w", err)
	}
	if err == nil && died >= maxOpenAttempts {
		err = fmt.Errorf("spool: open %s: %d opens in a row died: %w", path, died, ErrCorrupt)
	}
	if died > 0 {
		s.log.Warn("spool: an earlier open did not finish, the file was checked", "path", path, "died", died, "err", err)
	}
	var db *bolt.DB
	if err == nil {
		boltfile.ReadAhead(path)
		db, err = s.openBolt()
	}
	if err == nil {
		var st record.State
		st, err = s.load(db, quarantined)
		if err == nil {
			endOpen(path)
			s.install(db, st)
			return nil
		}
		boltfile.Close(db)
	}
	if !isCorrupt(err) {
		endOpen(path)
		return err
	}
	// The marker stays until the file is set aside: bbolt's open can
	// panic in its freelist walk (recovered, above) and leave the walk's
	// checker goroutine running, which panics on the next bad page out of
	// reach of any recover. A death here then counts, and the next open
	// checks the file itself instead of crash-looping.
	q, qerr := s.quarantine(err)
	endOpen(path)
	if qerr != nil {
		return qerr
	}
	db, err = s.openBolt()
	if err != nil {
		return fmt.Errorf("spool: open new file after quarantine of %s: %w", q, err)
	}
	st, err := s.load(db, quarantined+1)
	if err != nil {
		boltfile.Close(db)
		return fmt.Errorf("spool: open new file after quarantine of %s: %w", q, err)
	}
	s.install(db, st)
	return nil
}

// openBolt opens the file for writing: page size 4096, freelist not synced.
func (s *Spool) openBolt() (*bolt.DB, error) {
	db, err := boltfile.Open(s.opts.Path, &bolt.Options{
		Timeout:        s.opts.LockTimeout,
		PageSize:       record.PageSize,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		NoSync:         s.opts.UnsafeNoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return db, nil
}

// load checks the format, creates the buckets of a new file (with a new
// stream) and reads the state of the file into memory (never the backlog).
func (s *Spool) load(db *bolt.DB, quarantined uint64) (record.State, error) {
	st, err := record.Load(db, quarantined, func() record.Stream {
		id := reading.NewStreamID()
		s.log.Info("spool: new stream", "path", s.opts.Path, "stream", id.String())
		return record.Stream{ID: id, Created: s.opts.Now().UnixNano()}
	})
	if err != nil {
		return st, fmt.Errorf("spool: %w", err)
	}
	return st, nil
}

// install makes a freshly loaded file the spool's file.
func (s *Spool) install(db *bolt.DB, st record.State) {
	s.db, s.tab = db, st.Table
	s.mu.Lock()
	defer s.mu.Unlock()
	newStream := s.stream != st.Stream
	s.stream, s.streams = st.Stream, st.Streams
	s.counters, s.committed = st.Counters, st.Seq
	if !newStream { // reopened after a compaction
		s.nextSeq = max(s.nextSeq, st.Seq+1)
		return
	}
	// Buffered readings of a quarantined file were never committed, so
	// nobody has seen their seqs: they continue the new stream.
	s.nextSeq = st.Seq + 1
	for i := range s.buf {
		s.buf[i].seq = s.nextSeq
		s.nextSeq++
	}
	s.bufDropped = nil
}

// Append adds a reading to the spool and returns the seq it was given in
// the live stream. r's Device, Stream and Seq are ignored; the rest must
// pass reading.Validate. bootTime is CLOCK_BOOTTIME when r was taken, in
// the boot Options.Boot names: with the wall-clock offset of that boot,
// once known (SetBootOffset), a time taken unsynced is corrected when the
// reading is read. 0 means unknown (an imported reading, say); so does
// any bootTime when Options.Boot is zero.
//
// With CommitInterval 0, Append returns once the reading is committed (or
// with an error wrapping ErrNotCommitted: the reading stays buffered).
// Otherwise it returns once the reading is buffered; WaitCommitted or
// Flush wait for the commit. A full buffer blocks until a commit makes
// room or ctx ends; while commits fail it applies the policy to the
// buffer. Policy RejectNew returns ErrFull at the cap.
func (s *Spool) Append(ctx context.Context, r reading.Reading, bootTime time.Duration) (uint64, error) {
	r.Device, r.Stream, r.Seq = s.opts.Device, 0, 1
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("spool: append: %w", err)
	}
	r.Device, r.Seq = "", 0
	r.Labels = maps.Clone(r.Labels) // the caller may reuse its map
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return 0, fmt.Errorf("spool: append: %w", ErrClosed)
		}
		if s.opts.Policy == RejectNew && s.counters.Bytes+uint64(len(s.buf))*estimatedSize >= uint64(s.opts.MaxBytes) {
			s.rejected++
			s.mu.Unlock()
			return 0, fmt.Errorf("spool: append: %w (%d bytes, cap %d)", ErrFull, s.counters.Bytes, s.opts.MaxBytes)
		}
		if s.refuse {
			s.rejected++
			s.mu.Unlock()
			return 0, fmt.Errorf("spool: append: %w: the disk is full", ErrFull)
		}
		if len(s.buf) < s.opts.MaxBufferedReadings {
			break
		}
		if s.failing {
			if s.opts.Policy == RejectNew {
				s.rejected++
				s.mu.Unlock()
				return 0, fmt.Errorf("spool: append: %w: buffer full while commits fail: %v", ErrFull, s.lastErr)
			}
			if s.inCommit < len(s.buf) {
				s.dropBuffered()
				continue
			}
		}
		ch := s.commitCh
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("spool: append: waiting for buffer space: %w", context.Cause(ctx))
		case <-ch:
		}
		s.mu.Lock()
	}
	seq := s.nextSeq
	s.nextSeq++
	s.buf = append(s.buf, pending{r: r, bootTime: bootTime, seq: seq})
	s.journalReading(&s.buf[len(s.buf)-1]) // a crash of the process keeps it
	due := s.opts.CommitInterval == 0 || len(s.buf)-s.inCommit >= s.opts.CommitReadings
	g := s.gen + 1
	failing, lastErr := s.failing, s.lastErr
	s.mu.Unlock()
	if due {
		s.kickWriter()
	}
	if s.opts.CommitInterval > 0 {
		return seq, nil
	}
	if failing { // do not hold the caller through the writer's backoff
		return seq, fmt.Errorf("spool: append: %w: %w", ErrNotCommitted, lastErr)
	}
	return seq, s.waitGen(ctx, g)
}

// estimatedSize is the logical size assumed for a buffered reading.
const estimatedSize = 48

// dropBuffered drops the oldest buffered reading not being committed,
// recording its seq as dropped. s.mu is held.
func (s *Spool) dropBuffered() {
	i := s.inCommit
	seq := s.buf[i].seq
	s.buf = slices.Delete(s.buf, i, i+1)
	if n := len(s.bufDropped); n > 0 && s.bufDropped[n-1].to+1 == seq {
		s.bufDropped[n-1].to = seq
	} else {
		s.bufDropped = append(s.bufDropped, seqRange{seq, seq})
		s.log.Warn("spool: buffer full while commits fail, dropping oldest buffered readings", "from_seq", seq, "err", s.lastErr)
	}
}

func (s *Spool) kickWriter() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// kickNotify wakes a drain waiting on Committed (a wake pending already
// is enough).
func (s *Spool) kickNotify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// waitGen waits until commit g has finished; it returns nil if a commit
// from g on succeeded, else the error of the last commit.
func (s *Spool) waitGen(ctx context.Context, g uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitUntil(ctx, func() bool { return s.doneGen >= g }); err != nil {
		return fmt.Errorf("spool: waiting for commit: %w", err)
	}
	if s.okGen < g {
		return fmt.Errorf("spool: %w: %w", ErrNotCommitted, s.doneErr)
	}
	return nil
}

// Flush commits everything appended and acknowledged so far and waits for
// the commit.
func (s *Spool) Flush(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("spool: flush: %w", ErrClosed)
	}
	g := s.gen + 1
	s.mu.Unlock()
	s.kickWriter()
	return s.waitGen(ctx, g)
}

// WaitCommitted waits until the live stream's readings up to seq are
// committed.
func (s *Spool) WaitCommitted(ctx context.Context, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitUntil(ctx, func() bool { return s.committed >= seq }); err != nil {
		return fmt.Errorf("spool: waiting for seq %d: %w", seq, err)
	}
	return nil
}

// waitUntil waits, s.mu held, for a commit after which done() holds. It
// fails with ErrClosed once the writer has stopped, or with ctx's cause.
func (s *Spool) waitUntil(ctx context.Context, done func() bool) error {
	for !done() {
		if s.writerDone {
			return ErrClosed
		}
		ch := s.commitCh
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			s.mu.Lock()
			return context.Cause(ctx)
		case <-ch:
		}
		s.mu.Lock()
	}
	return nil
}

// Committed returns a channel that receives after a commit stored new
// readings, for a drain loop waiting for work.
func (s *Spool) Committed() <-chan struct{} { return s.notify }

// Close commits what is pending, stops the writer and closes the file. If
// ctx ends first, Close returns its error and the writer finishes in the
// background.
func (s *Spool) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("spool: close: %w", context.Cause(ctx))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 {
		return fmt.Errorf("spool: close: %d readings not committed: %w: %w", len(s.buf), ErrNotCommitted, s.lastErr)
	}
	return nil
}

// Stats describe a spool at one moment.
type Stats struct {
	Path     string
	Stream   reading.StreamID // the live stream
	Seq      uint64           // committed seq high-water mark of the live stream
	Readings uint64           // committed readings not yet acknowledged
	Bytes    uint64           // their logical size (what MaxBytes caps)
	FileSize int64
	Buffered int       // appended, not committed yet
	Oldest   time.Time // time of the oldest stored reading; zero if none
	Streams  int

	Dropped      uint64 // readings dropped by the cap policy, ever in this file
	DeadLettered uint64
	Purged       uint64
	Quarantined  uint64 // files quarantined on this path

	Commits     uint64 // successful commits since Open (each costs bbolt two fdatasyncs)
	Compactions uint64 // since Open
	Failing     bool   // the last commit failed
	LastError   string // its error
	OutOfSpace  bool   // the disk is full: the policy makes room in the file
	Rejected    uint64 // appends refused with ErrFull since Open (reject_new)
}

// Stats returns the spool's counters. It reads the oldest reading's time,
// nothing else of the backlog.
func (s *Spool) Stats() (Stats, error) {
	s.mu.Lock()
	st := Stats{
		Path:         s.opts.Path,
		Stream:       s.stream,
		Seq:          s.committed,
		Readings:     s.counters.Readings,
		Bytes:        s.counters.Bytes,
		Buffered:     len(s.buf),
		Streams:      len(s.streams),
		Dropped:      s.counters.Dropped,
		DeadLettered: s.counters.DeadLettered,
		Purged:       s.counters.Purged,
		Quarantined:  s.counters.Quarantined,
		Commits:      s.commits.Load(),
		Compactions:  s.compactions.Load(),
		Failing:      s.failing,
		OutOfSpace:   s.outOfSpace,
		Rejected:     s.rejected,
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	streams := slices.Clone(s.streams)
	s.mu.Unlock()
	if fi, err := os.Stat(s.opts.Path); err == nil {
		st.FileSize = fi.Size()
	}
	err := s.oldest(streams, func(stream reading.StreamID, v []byte) error {
		d, err := record.DecodeStored(v)
		if err != nil {
			return fmt.Errorf("stream %v oldest reading: %w: %w", stream, err, ErrCorrupt)
		}
		st.Oldest = d.Time
		return nil
	})
	return st, err
}
