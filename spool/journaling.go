package spool

import (
	"errors"
	"os"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/spool/journal"
)

// The pre-commit journal (package journal, <path>.journal) holds every
// reading appended and every batch acknowledged since the last commit,
// written to the page cache as it happens, so that a crash of the process
// loses neither: Open replays it into a commit. The functions here run
// with s.mu held unless they say otherwise.

// ackCommitDelay bounds how long acknowledgements of ackTimedReadings or
// more readings wait for a commit: a power cut (which takes the journal)
// then resends little. Fewer wait for the next commit interval, so the
// acks of a steady trickle cost no commit of their own.
const (
	ackCommitDelay   = 200 * time.Millisecond
	ackTimedReadings = 100
)

// errStopReplay ends a replay at a record that does not continue the
// live stream.
var errStopReplay = errors.New("stop replay")

// openJournal opens the journal beside the file, replays what it holds
// into the spool (committed at once, with fsync) and empties it. It runs
// in Open, before the writer starts. A journal that cannot be opened is
// logged, and the spool runs without (a crash then loses the readings
// not yet committed, as a power cut does).
func (s *Spool) openJournal() {
	j, err := journal.Open(journal.Path(s.opts.Path))
	if err != nil {
		s.log.Warn("spool: no pre-commit journal; a crash loses what is not committed yet", "path", s.opts.Path, "err", err)
		return
	}
	s.mu.Lock()
	s.jr = j
	var replayed, acks, stale int
	_ = j.Replay(func(b []byte) error {
		e, err := decodeJournalRecord(b, s.opts.Device)
		if err != nil {
			s.log.Warn("spool: journal record unreadable, replay ends", "path", s.opts.Path, "err", err)
			return errStopReplay
		}
		if e.ack != nil {
			s.acks = append(s.acks, *e.ack)
			for _, r := range e.ack.runs {
				s.ackWaiting += int(r.to - r.from + 1)
			}
			acks++
			return nil
		}
		switch {
		case e.stream != s.stream || e.p.seq < s.nextSeq:
			stale++ // committed already, or of a stream set aside
			return nil
		case e.p.seq > s.nextSeq:
			s.log.Warn("spool: journal skips seqs, replay ends", "path", s.opts.Path, "want_seq", s.nextSeq, "got_seq", e.p.seq)
			return errStopReplay
		}
		s.buf = append(s.buf, *e.p)
		s.nextSeq++
		replayed++
		return nil
	})
	s.mu.Unlock()
	if replayed > 0 || acks > 0 {
		s.log.Info("spool: replaying the pre-commit journal", "path", s.opts.Path, "readings", replayed, "acks", acks, "stale", stale)
		if err := s.commit(); err == nil {
			return // the commit emptied the journal
		}
	}
	s.mu.Lock()
	s.rejournalLocked()
	s.mu.Unlock()
}

// journalReading hands the buffered reading p of the live stream to the
// journal.
func (s *Spool) journalReading(p *pending) {
	if s.jr == nil {
		return
	}
	s.jbuf = appendJournalReading(s.jbuf[:0], s.stream, p)
	s.journalErr(s.jr.Append(s.jbuf))
}

// journalAck hands an acknowledgement to the journal.
func (s *Spool) journalAck(a *ackOp) {
	if s.jr == nil {
		return
	}
	s.jbuf = appendJournalAck(s.jbuf[:0], a)
	s.journalErr(s.jr.Append(s.jbuf))
}

func (s *Spool) journalErr(err error) {
	if err != nil && !s.jrFailing {
		s.jrFailing = true
		s.log.Warn("spool: journal write failed; a crash before the next commit may lose readings", "path", s.opts.Path, "err", err)
	}
}

// rejournalLocked empties the journal after a commit (or a quarantine),
// carrying over what still waits for one: the buffered readings and the
// acknowledgements.
func (s *Spool) rejournalLocked() {
	if s.jr == nil {
		return
	}
	nb := len(s.buf)
	err := s.jr.Reset(nb+len(s.acks), func(i int, b []byte) []byte {
		if i < nb {
			return appendJournalReading(b, s.stream, &s.buf[i])
		}
		return appendJournalAck(b, &s.acks[i-nb])
	})
	if err != nil {
		s.journalErr(err)
		return
	}
	s.jrFailing = false
}

// closeJournalLocked closes the journal.
func (s *Spool) closeJournalLocked() {
	if s.jr != nil {
		if err := s.jr.Close(); err != nil {
			s.log.Warn("spool: close journal", "path", s.opts.Path, "err", err)
		}
		s.jr = nil
	}
}

// quarantineJournal moves the journal aside with the quarantined file
// dst (<path>.journal.quarantined-<the same time>, a name the globs for
// quarantined files, <path>.quarantined-*, do not match), closing it
// first; s.mu is not held. The spool's readings and acks were
// of the file set aside: a new journal is begun by reopenJournal.
func (s *Spool) quarantineJournal(dst string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeJournalLocked()
	src := journal.Path(s.opts.Path)
	if _, err := os.Stat(src); err == nil {
		if err := os.Rename(src, src+strings.TrimPrefix(dst, s.opts.Path)); err != nil {
			s.log.Warn("spool: could not move the journal aside with the quarantined file", "path", src, "err", err)
			_ = os.Remove(src)
		}
	}
}

// reopenJournal begins a journal for a new file after a run-time
// quarantine (if none is open), holding the buffered readings with their new seqs; s.mu is
// not held.
func (s *Spool) reopenJournal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jr != nil || s.writerDone {
		return
	}
	j, err := journal.Open(journal.Path(s.opts.Path))
	if err != nil {
		s.log.Warn("spool: no pre-commit journal; a crash loses what is not committed yet", "path", s.opts.Path, "err", err)
		return
	}
	s.jr = j
	s.rejournalLocked()
}

// scheduleAckCommit makes the writer commit within ackCommitDelay once
// ackTimedReadings acknowledged readings wait; s.mu is held.
func (s *Spool) scheduleAckCommit() {
	if s.ackTimerSet || s.ackWaiting < ackTimedReadings || s.opts.CommitInterval <= ackCommitDelay {
		return
	}
	s.ackTimerSet = true
	if s.ackTimer == nil {
		s.ackTimer = time.AfterFunc(ackCommitDelay, s.kickWriter)
		return
	}
	s.ackTimer.Reset(ackCommitDelay)
}
