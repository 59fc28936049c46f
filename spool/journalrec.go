package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
)

// The records of the pre-commit journal (package journal), one per
// appended reading and one per acknowledged batch:
//
//	reading: 1 | stream u64 | seq uvarint | boot time varint | unix s varint |
//	         ns uvarint | value bits u64 | flags u8 (1: unsynced) |
//	         sensor | unit | label count uvarint | (key | value)…
//	ack:     2 | stream u64 | run count uvarint | (from | to uvarint)… |
//	         dropped count uvarint | (stream u64 | from | to uvarint)…
//
// strings are a uvarint length and the bytes; fixed-size integers are
// little-endian.
const (
	jrReading = 1
	jrAck     = 2
)

// jrEntry is one decoded journal record: a reading (p set) or an ack.
type jrEntry struct {
	stream reading.StreamID
	p      *pending
	ack    *ackOp
}

var errJournalRecord = errors.New("malformed journal record")

func appendJournalReading(b []byte, stream reading.StreamID, p *pending) []byte {
	b = append(b, jrReading)
	b = binary.LittleEndian.AppendUint64(b, uint64(stream))
	b = binary.AppendUvarint(b, p.seq)
	b = binary.AppendVarint(b, int64(p.bootTime))
	b = binary.AppendVarint(b, p.r.Time.Unix())
	b = binary.AppendUvarint(b, uint64(p.r.Time.Nanosecond()))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.r.Value))
	var flags byte
	if p.r.Unsynced {
		flags = 1
	}
	b = append(b, flags)
	b = appendString(b, p.r.Sensor)
	b = appendString(b, p.r.Unit)
	b = binary.AppendUvarint(b, uint64(len(p.r.Labels)))
	for k, v := range p.r.Labels {
		b = appendString(appendString(b, k), v)
	}
	return b
}

func appendJournalAck(b []byte, a *ackOp) []byte {
	b = append(b, jrAck)
	b = binary.LittleEndian.AppendUint64(b, uint64(a.stream))
	b = binary.AppendUvarint(b, uint64(len(a.runs)))
	for _, r := range a.runs {
		b = binary.AppendUvarint(binary.AppendUvarint(b, r.from), r.to)
	}
	b = binary.AppendUvarint(b, uint64(len(a.dropped)))
	for _, d := range a.dropped {
		b = binary.LittleEndian.AppendUint64(b, uint64(d.Stream))
		b = binary.AppendUvarint(binary.AppendUvarint(b, d.From), d.To)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// jrDecoder reads one record's fields, remembering the first error.
type jrDecoder struct {
	b   []byte
	err error
}

func (d *jrDecoder) fail() {
	if d.err == nil {
		d.err = errJournalRecord
	}
	d.b = nil
}

func (d *jrDecoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *jrDecoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *jrDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *jrDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items each at least min bytes long, refusing one
// the rest of the record cannot hold.
func (d *jrDecoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *jrDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// decodeJournalRecord decodes one journal payload. A reading must pass
// reading.Validate (with the spool's device), so a record that decodes but
// holds garbage is refused too.
func decodeJournalRecord(b []byte, device string) (jrEntry, error) {
	d := jrDecoder{b: b}
	var e jrEntry
	switch d.byte1() {
	case jrReading:
		p := &pending{}
		e.stream = reading.StreamID(d.u64())
		p.seq = d.uvarint()
		p.bootTime = time.Duration(d.varint())
		sec := d.varint()
		nsec := d.uvarint()
		p.r.Value = math.Float64frombits(d.u64())
		flags := d.byte1()
		p.r.Unsynced = flags&1 != 0
		p.r.Sensor = d.str()
		p.r.Unit = d.str()
		if n := d.count(2); n > 0 {
			p.r.Labels = make(map[string]string, n)
			for range n {
				k := d.str()
				p.r.Labels[k] = d.str()
			}
		}
		if d.err != nil || len(d.b) != 0 || flags > 1 || nsec >= 1e9 || p.seq == 0 || p.seq > reading.MaxSeq || p.bootTime < 0 {
			return e, fmt.Errorf("reading: %w", errJournalRecord)
		}
		p.r.Time = time.Unix(sec, int64(nsec)).UTC()
		p.r.Device, p.r.Stream, p.r.Seq = device, e.stream, p.seq
		if err := p.r.Validate(); err != nil {
			return e, fmt.Errorf("reading: %w: %w", errJournalRecord, err)
		}
		p.r.Device, p.r.Stream, p.r.Seq = "", 0, 0
		e.p = p
	case jrAck:
		a := &ackOp{stream: reading.StreamID(d.u64())}
		for range d.count(2) {
			r := seqRange{d.uvarint(), d.uvarint()}
			if r.from == 0 || r.to < r.from {
				d.fail()
			}
			a.runs = append(a.runs, r)
		}
		for range d.count(10) {
			dr := reading.Dropped{Stream: reading.StreamID(d.u64()), From: d.uvarint(), To: d.uvarint()}
			if dr.From == 0 || dr.To < dr.From {
				d.fail()
			}
			a.dropped = append(a.dropped, dr)
		}
		if d.err != nil || len(d.b) != 0 {
			return e, fmt.Errorf("ack: %w", errJournalRecord)
		}
		e.stream, e.ack = a.stream, a
	default:
		return e, fmt.Errorf("kind: %w", errJournalRecord)
	}
	return e, nil
}
