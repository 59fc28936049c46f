package postgres

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/store"
)

// The staging rows are encoded here in PostgreSQL's binary COPY format
// into a pooled buffer, instead of through pgx's CopyFrom: that one asks
// for a []any per row (ten boxed values), encodes each through its type
// map and grows a fresh buffer per batch, which made it the receiver's
// largest allocator. The encodings are those pgx uses for the same Go
// values (timestamptz as microseconds since 2000-01-01, truncated; jsonb
// as version 1 and the encoding/json text), so what is stored is the same.

// copyStagingSQL copies binary rows into the staging table.
const copyStagingSQL = `COPY staging (fate, stream, seq, sensor, ts, value, unit, labels, unsynced) FROM STDIN BINARY`

// copySignature starts a binary COPY stream: the signature, flags 0 and
// no header extension.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// pgEpochMicros is 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
const pgEpochMicros = 946_684_800 * 1_000_000

var copyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// copyRows encodes the staging rows rs[write[j]] (fate fates[write[j]])
// into buf as one binary COPY stream.
func copyRows(buf *bytes.Buffer, rs []reading.Reading, fates []store.Fate, write []int) error {
	buf.Reset()
	buf.Grow(len(copySignature) + len(write)*96 + 2)
	b := append(buf.AvailableBuffer(), copySignature...)
	for _, i := range write {
		r := &rs[i]
		b = binary.BigEndian.AppendUint16(b, 9) // fields
		b = appendField(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(int32(fates[i])))
		b = appendField(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(int64(r.Stream)))
		b = appendField(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(int64(r.Seq)))
		b = appendText(b, r.Sensor)
		b = appendField(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(pgMicros(r.Time)))
		b = appendField(b, 8)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Value))
		b = appendText(b, r.Unit)
		if len(r.Labels) == 0 {
			b = binary.BigEndian.AppendUint32(b, math.MaxUint32) // NULL
		} else {
			js, err := json.Marshal(r.Labels)
			if err != nil {
				return fmt.Errorf("encode labels: %w", err)
			}
			b = appendField(b, 1+len(js))
			b = append(b, 1) // jsonb version
			b = append(b, js...)
		}
		b = appendField(b, 1)
		if r.Unsynced {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.BigEndian.AppendUint16(b, math.MaxUint16) // trailer: -1
	buf.Write(b)
	return nil
}

func appendField(b []byte, n int) []byte { return binary.BigEndian.AppendUint32(b, uint32(n)) }

func appendText(b []byte, s string) []byte { return append(appendField(b, len(s)), s...) }

// pgMicros is t as a timestamptz: microseconds since 2000-01-01 UTC,
// sub-microseconds truncated (as pgx encodes a time.Time).
func pgMicros(t time.Time) int64 {
	return t.Unix()*1_000_000 + int64(t.Nanosecond())/1000 - pgEpochMicros
}
