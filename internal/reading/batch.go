package reading

// Batch is a run of readings of one stream, oldest first, with the dropped
// ranges of that stream to report with them. The spool hands a batch out,
// an uplink sends it, and the spool takes it back (acknowledged or
// dead-lettered) by its identity: Stream, and the seqs it holds.
type Batch struct {
	Stream StreamID
	// From and To are the seq range the batch covers: the first and last
	// seq of Readings; 0, 0 when it holds no readings (a spool may name a
	// range it no longer holds, to acknowledge or dead-letter it).
	From, To uint64
	Readings []Reading // Device, Stream and Seq filled
	Dropped  []Dropped // ranges to report with this batch
}

// Halves splits b in two, for a receiver that found it too large: the
// older half of the readings, with the dropped ranges, and the newer half.
// The halves share b's readings. b should hold two readings or more.
func (b *Batch) Halves() (older, newer *Batch) {
	n := len(b.Readings) / 2
	h := make([]Batch, 2) // one allocation for both
	h[0] = b.sub(b.Readings[:n:n])
	h[0].Dropped = b.Dropped
	h[1] = b.sub(b.Readings[n:])
	return &h[0], &h[1]
}

// SplitOut sets the reading at index i apart, for a receiver that refused
// that line alone: it returns the reading as a batch of its own, and the
// rest of b (with the dropped ranges) to be sent again. The rest is a copy;
// the single reading shares b's. i must index b.Readings.
func (b *Batch) SplitOut(i int) (one, rest *Batch) {
	s := make([]Batch, 2)
	s[0] = b.sub(b.Readings[i : i+1 : i+1])
	others := make([]Reading, 0, len(b.Readings)-1)
	others = append(append(others, b.Readings[:i]...), b.Readings[i+1:]...)
	s[1] = b.sub(others)
	s[1].Dropped = b.Dropped
	return &s[0], &s[1]
}

// sub is the batch of b's stream that holds rs, a part of b's readings.
func (b *Batch) sub(rs []Reading) Batch {
	s := Batch{Stream: b.Stream, Readings: rs}
	if n := len(rs); n > 0 {
		s.From, s.To = rs[0].Seq, rs[n-1].Seq
	}
	return s
}
