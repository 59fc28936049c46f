package reading

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

const good = `{"device":"pi-07","stream":"9f3c2a71d04b88e1","seq":1042,"sensor":"greenhouse.temperature","value":21.5,"unit":"C","timestamp":"2026-11-22T10:00:00.123Z"}`

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UTC()
}

func decodeAll(t testing.TB, in string, lim Limits) ([]Line, []error) {
	t.Helper()
	dec := NewDecoder(strings.NewReader(in), lim)
	var lines []Line
	var errs []error
	for {
		var l Line
		err := dec.Decode(&l)
		if err == io.EOF {
			return lines, errs
		}
		if err != nil {
			errs = append(errs, err)
			if errors.Is(err, ErrTooManyLines) {
				return lines, errs
			}
			continue
		}
		lines = append(lines, l)
	}
}

func TestDecodeDesignExample(t *testing.T) {
	lines, errs := decodeAll(t, good+"\n", Limits{})
	if len(errs) != 0 || len(lines) != 1 {
		t.Fatalf("Decode(design example) = %d lines, errors %v; want 1 line", len(lines), errs)
	}
	want := Reading{
		Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, Seq: 1042,
		Sensor: "greenhouse.temperature", Value: 21.5, Unit: "C",
		Time: mustTime(t, "2026-11-22T10:00:00.123Z"),
	}
	if got := lines[0]; got.Kind != KindReading || !reflect.DeepEqual(got.Reading, want) {
		t.Errorf("Decode(design example) = %+v; want %+v", got, want)
	}
	// The encoder writes the design's example byte for byte.
	if got := string(AppendReading(nil, &want)); got != good+"\n" {
		t.Errorf("AppendReading = %s; want %s", got, good)
	}
}

func TestDecodeOptionalFieldsAndDropped(t *testing.T) {
	in := `{"device":"pi-07","stream":"00000000000000ff","seq":1,"sensor":"s","value":-0.5,"labels":{"site":"north","row":"3"},"timestamp":"2026-11-22T11:00:00+01:00","clock":"unsynced","future":{"a":[1,2,{"b":null}],"c":true}}` + "\r\n" +
		"\n" + // blank lines are skipped
		`{"device":"pi-07","stream":"00000000000000ff","dropped":{"from":2,"to":9,"summary":[]}}` + "\n"
	lines, errs := decodeAll(t, in, Limits{})
	if len(errs) != 0 || len(lines) != 2 {
		t.Fatalf("Decode = %d lines, errors %v; want 2 lines", len(lines), errs)
	}
	r := lines[0].Reading
	if !r.Unsynced || r.Labels["site"] != "north" || len(r.Labels) != 2 || r.Value != -0.5 {
		t.Errorf("reading = %+v; want unsynced, two labels, value -0.5", r)
	}
	if want := mustTime(t, "2026-11-22T10:00:00Z"); !r.Time.Equal(want) || r.Time.Location() != time.UTC {
		t.Errorf("timestamp = %v; want %v in UTC", r.Time, want)
	}
	want := Dropped{Device: "pi-07", Stream: 0xff, From: 2, To: 9}
	if lines[1].Kind != KindDropped || lines[1].Dropped != want {
		t.Errorf("dropped line = %+v; want %+v", lines[1], want)
	}
}

func TestDecodeErrorsNameLineAndField(t *testing.T) {
	long := strings.Repeat("x", MaxSensorLen+1)
	tests := []struct {
		name, line string
		field      string
		want       error
	}{
		{"not json", `hello`, "", ErrSyntax},
		{"array", `[1]`, "", ErrSyntax},
		{"truncated", `{"device":"pi-07"`, "", ErrSyntax},
		{"trailing data", good + ` x`, "", ErrSyntax},
		{"missing device", strings.Replace(good, `"device":"pi-07",`, "", 1), "device", ErrMissing},
		{"missing stream", strings.Replace(good, `"stream":"9f3c2a71d04b88e1",`, "", 1), "stream", ErrMissing},
		{"missing seq", strings.Replace(good, `"seq":1042,`, "", 1), "seq", ErrMissing},
		{"missing sensor", strings.Replace(good, `"sensor":"greenhouse.temperature",`, "", 1), "sensor", ErrMissing},
		{"missing value", strings.Replace(good, `"value":21.5,`, "", 1), "value", ErrMissing},
		{"missing timestamp", strings.Replace(good, `,"timestamp":"2026-11-22T10:00:00.123Z"`, "", 1), "timestamp", ErrMissing},
		{"device charset", strings.Replace(good, `pi-07`, `pi/07`, 1), "device", ErrInvalid},
		{"device too long", strings.Replace(good, `pi-07`, strings.Repeat("d", 65), 1), "device", ErrInvalid},
		{"stream upper case", strings.Replace(good, `9f3c2a71d04b88e1`, `9F3C2A71D04B88E1`, 1), "stream", ErrInvalid},
		{"stream short", strings.Replace(good, `9f3c2a71d04b88e1`, `9f3c`, 1), "stream", ErrInvalid},
		{"seq zero", strings.Replace(good, `1042`, `0`, 1), "seq", ErrInvalid},
		{"seq fraction", strings.Replace(good, `1042`, `1042.0`, 1), "seq", ErrInvalid},
		{"seq negative", strings.Replace(good, `1042`, `-1`, 1), "seq", ErrInvalid},
		{"seq too big", strings.Replace(good, `1042`, `9223372036854775808`, 1), "seq", ErrInvalid},
		{"seq string", strings.Replace(good, `1042`, `"1042"`, 1), "seq", ErrInvalid},
		{"value overflow", strings.Replace(good, `21.5`, `1e999`, 1), "value", ErrInvalid},
		{"value NaN", strings.Replace(good, `21.5`, `NaN`, 1), "value", ErrSyntax},
		{"value string", strings.Replace(good, `21.5`, `"21.5"`, 1), "value", ErrInvalid},
		{"value null", strings.Replace(good, `21.5`, `null`, 1), "value", ErrInvalid},
		{"bad timestamp", strings.Replace(good, `2026-11-22T10:00:00.123Z`, `22/11/2026 10:00`, 1), "timestamp", ErrInvalid},
		{"timestamp without zone", strings.Replace(good, `2026-11-22T10:00:00.123Z`, `2026-11-22T10:00:00`, 1), "timestamp", ErrInvalid},
		{"sensor too long", strings.Replace(good, `greenhouse.temperature`, long, 1), "sensor", ErrInvalid},
		{"sensor control char", strings.Replace(good, `greenhouse.temperature`, `green\u0007house`, 1), "sensor", ErrInvalid},
		{"sensor raw control char", strings.Replace(good, `greenhouse.temperature`, "green\x01house", 1), "sensor", ErrSyntax},
		{"sensor bad utf8", strings.Replace(good, `greenhouse.temperature`, "green\xffhouse", 1), "sensor", ErrInvalid},
		{"sensor empty", strings.Replace(good, `greenhouse.temperature`, ``, 1), "sensor", ErrInvalid},
		{"unit too long", strings.Replace(good, `"C"`, `"`+strings.Repeat("u", 33)+`"`, 1), "unit", ErrInvalid},
		{"labels not strings", strings.Replace(good, `"unit":"C"`, `"labels":{"a":1}`, 1), "labels", ErrInvalid},
		{"labels array", strings.Replace(good, `"unit":"C"`, `"labels":["a"]`, 1), "labels", ErrInvalid},
		{"clock unknown", strings.Replace(good, `"unit":"C"`, `"clock":"gps"`, 1), "clock", ErrInvalid},
		{"duplicate field", strings.Replace(good, `"unit":"C"`, `"unit":"C","value":3`, 1), "value", ErrInvalid},
		{"dropped with reading fields", strings.Replace(good, `"unit":"C"`, `"dropped":{"from":1,"to":2}`, 1), "dropped", ErrInvalid},
		{"dropped reversed", `{"device":"d","stream":"0000000000000001","dropped":{"from":5,"to":2}}`, "dropped", ErrInvalid},
		{"dropped no to", `{"device":"d","stream":"0000000000000001","dropped":{"from":5}}`, "dropped", ErrMissing},
		{"dropped no device", `{"stream":"0000000000000001","dropped":{"from":1,"to":2}}`, "device", ErrMissing},
		{"deep unknown", strings.Replace(good, `"unit":"C"`, `"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40), 1), "", ErrSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The bad line sits between two good ones: it is reported with
			// its own number and does not stop the line after it.
			in := good + "\n" + tc.line + "\n" + strings.Replace(good, "1042", "1043", 1) + "\n"
			lines, errs := decodeAll(t, in, Limits{})
			if len(errs) != 1 {
				t.Fatalf("Decode(%s) errors = %v; want exactly one", tc.line, errs)
			}
			var le *LineError
			if !errors.As(errs[0], &le) {
				t.Fatalf("Decode(%s) error = %T %v; want *LineError", tc.line, errs[0], errs[0])
			}
			if le.Line != 2 || le.Field != tc.field || !errors.Is(le, tc.want) {
				t.Errorf("Decode(%s) error = line %d field %q (%v); want line 2 field %q wrapping %v", tc.line, le.Line, le.Field, le, tc.field, tc.want)
			}
			if len(lines) != 2 || lines[1].Reading.Seq != 1043 {
				t.Errorf("Decode(%s) good lines = %d; want both good lines around it", tc.line, len(lines))
			}
		})
	}
}

func TestDecodeLineTooLong(t *testing.T) {
	const max = 256
	pad := strings.Repeat("p", max) // an unknown field makes the line too long
	long := strings.Replace(good, `"unit":"C"`, `"pad":"`+pad+`"`, 1)
	in := good + "\n" + long + "\n" + good + "\n"
	lines, errs := decodeAll(t, in, Limits{MaxLineBytes: max})
	var le *LineError
	if len(errs) != 1 || !errors.As(errs[0], &le) || le.Line != 2 || !errors.Is(le, ErrLineTooLong) {
		t.Fatalf("errors = %v; want one ErrLineTooLong on line 2", errs)
	}
	if len(lines) != 2 {
		t.Errorf("good lines = %d; want 2 (the long line is skipped, not the rest)", len(lines))
	}

	// A line of exactly MaxLineBytes, with CRLF, is fine.
	exact := strings.Replace(good, `"unit":"C"`, `"x":"`+strings.Repeat("y", max-len(good)-len(`"x":"",`))+`","unit":"C"`, 1)
	if len(exact) != max {
		t.Fatalf("test line is %d bytes; want %d", len(exact), max)
	}
	if _, errs := decodeAll(t, exact+"\r\n", Limits{MaxLineBytes: max}); len(errs) != 0 {
		t.Errorf("line of exactly MaxLineBytes: %v", errs)
	}
}

func TestDecodeTooManyLines(t *testing.T) {
	in := strings.Repeat(good+"\n", 5)
	lines, errs := decodeAll(t, in, Limits{MaxLines: 3})
	var le *LineError
	if len(lines) != 3 || len(errs) != 1 || !errors.As(errs[0], &le) || le.Line != 4 || !errors.Is(le, ErrTooManyLines) {
		t.Fatalf("got %d lines, errors %v; want 3 lines then ErrTooManyLines on line 4", len(lines), errs)
	}
	dec := NewDecoder(strings.NewReader(in), Limits{MaxLines: 3})
	var l Line
	for range 3 {
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // sticky
		if err := dec.Decode(&l); !errors.Is(err, ErrTooManyLines) {
			t.Fatalf("Decode after the limit = %v; want ErrTooManyLines again", err)
		}
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, good+"\n"), nil
	}
	return 0, errors.New("connection reset")
}

func TestDecodeReaderError(t *testing.T) {
	dec := NewDecoder(&failingReader{n: 1}, Limits{})
	var l Line
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("first line: %v", err)
	}
	err := dec.Decode(&l)
	if err == nil || err == io.EOF || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Decode = %v; want the reader's error", err)
	}
	var le *LineError
	if errors.As(err, &le) {
		t.Errorf("a reader failure is not a bad line: %v", err)
	}
}

// genReader produces n distinct valid lines without holding them.
type genReader struct {
	n, i int
	buf  []byte
	r    Reading
}

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i == g.n {
			return 0, io.EOF
		}
		g.i++
		g.r.Seq = uint64(g.i)
		g.r.Value = float64(g.i%5000) / 100
		g.r.Time = g.r.Time.Add(100 * time.Millisecond)
		g.buf = AppendReading(g.buf[:0], &g.r)
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

func newGen(n int) *genReader {
	return &genReader{n: n, r: Reading{
		Device: "pi-07", Stream: 0x9f3c2a71d04b88e1, Sensor: "greenhouse.temperature",
		Unit: "C", Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Labels: map[string]string{"site": "north-field", "rack": "r4"},
	}}
}

// TestDecodeStreamsInBoundedMemory decodes a large body and checks that the
// bytes allocated are a small fraction of it: the body is never held.
func TestDecodeStreamsInBoundedMemory(t *testing.T) {
	n := 500_000 // ≈ 100 MB
	if testing.Short() || raceEnabled {
		n = 50_000
	}
	g := newGen(n)
	dec := NewDecoder(g, Limits{MaxLines: n})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var l Line
	var count int
	var last uint64
	for {
		err := dec.Decode(&l)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.Reading.Seq != last+1 {
			t.Fatalf("seq %d after %d", l.Reading.Seq, last)
		}
		last = l.Reading.Seq
		count++
	}
	runtime.ReadMemStats(&after)
	body := int64(n) * int64(len(AppendReading(nil, &g.r)))
	// Labels are a map per reading (≈ 400 B); everything else is interned.
	// The bound is per line, far below the line itself.
	alloc := int64(after.TotalAlloc - before.TotalAlloc)
	if count != n {
		t.Fatalf("decoded %d lines; want %d", count, n)
	}
	t.Logf("decoded %d lines, %.1f MB body, %.1f MB allocated in all, heap in use %.1f MB", n, float64(body)/1e6, float64(alloc)/1e6, float64(after.HeapInuse)/1e6)
	if after.HeapInuse > before.HeapInuse+16<<20 {
		t.Errorf("heap grew by %d bytes while decoding; want bounded", after.HeapInuse-before.HeapInuse)
	}
}

func TestRoundTrip(t *testing.T) {
	rs := []Reading{
		{Device: "a", Stream: 1, Seq: 1, Sensor: "s", Value: 0, Time: time.Unix(0, 1).UTC()},
		{Device: "pi_07.x-Y", Stream: math.MaxUint64, Seq: MaxSeq, Sensor: "température \"quoted\" \\ / ☃", Value: -1.5e-300, Unit: "µS/cm", Time: mustTime(t, "9999-12-31T23:59:59.999999999Z"), Unsynced: true},
		{Device: "d", Stream: 7, Seq: 2, Sensor: "big", Value: 1.7976931348623157e308, Labels: map[string]string{"z": "", "a": "q\"uote"}, Time: mustTime(t, "1970-01-01T00:00:00Z")},
		{Device: "d", Stream: 7, Seq: 3, Sensor: "negzero", Value: math.Copysign(0, -1), Time: mustTime(t, "2026-01-01T00:00:00.5Z")},
	}
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for i := range rs {
		if err := enc.Reading(&rs[i]); err != nil {
			t.Fatalf("Encode(%+v): %v", rs[i], err)
		}
	}
	d := Dropped{Device: "d", Stream: 7, From: 4, To: 10}
	if err := enc.Dropped(&d); err != nil {
		t.Fatal(err)
	}
	lines, errs := decodeAll(t, buf.String(), Limits{})
	if len(errs) != 0 || len(lines) != len(rs)+1 {
		t.Fatalf("decode(encode) = %d lines, %v", len(lines), errs)
	}
	for i := range rs {
		got := lines[i].Reading
		if !got.Time.Equal(rs[i].Time) || math.Float64bits(got.Value) != math.Float64bits(rs[i].Value) {
			t.Errorf("line %d: time/value %v %v; want %v %v", i+1, got.Time, got.Value, rs[i].Time, rs[i].Value)
		}
		got.Time, got.Value = rs[i].Time, rs[i].Value
		if !reflect.DeepEqual(got, rs[i]) {
			t.Errorf("line %d = %+v; want %+v", i+1, got, rs[i])
		}
	}
	if lines[len(rs)].Dropped != d {
		t.Errorf("dropped = %+v; want %+v", lines[len(rs)].Dropped, d)
	}
}

func TestEncoderRefusesInvalid(t *testing.T) {
	ok := Reading{Device: "d", Stream: 1, Seq: 1, Sensor: "s", Time: time.Now()}
	tests := []struct {
		field string
		mod   func(*Reading)
	}{
		{"device", func(r *Reading) { r.Device = "a b" }},
		{"seq", func(r *Reading) { r.Seq = 0 }},
		{"sensor", func(r *Reading) { r.Sensor = "a\nb" }},
		{"value", func(r *Reading) { r.Value = math.NaN() }},
		{"value", func(r *Reading) { r.Value = math.Inf(-1) }},
		{"unit", func(r *Reading) { r.Unit = "\x7f" }},
		{"labels", func(r *Reading) { r.Labels = map[string]string{"": "x"} }},
		{"timestamp", func(r *Reading) { r.Time = time.Time{} }},
	}
	for _, tc := range tests {
		r := ok
		tc.mod(&r)
		var buf bytes.Buffer
		err := NewEncoder(&buf).Reading(&r)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || buf.Len() != 0 {
			t.Errorf("Encode(bad %s) = %v, wrote %d bytes; want a FieldError naming %q and nothing written", tc.field, err, buf.Len(), tc.field)
		}
	}
	if err := NewEncoder(io.Discard).Reading(&ok); err != nil {
		t.Errorf("Encode(valid) = %v", err)
	}
}

func TestStreamID(t *testing.T) {
	for _, id := range []StreamID{0, 1, 0x9f3c2a71d04b88e1, math.MaxUint64, NewStreamID()} {
		s := id.String()
		back, err := ParseStreamID(s)
		if len(s) != 16 || err != nil || back != id {
			t.Errorf("ParseStreamID(%q) = %v, %v; want %v", s, back, err, uint64(id))
		}
	}
	if a, b := NewStreamID(), NewStreamID(); a == b || a == 0 {
		t.Errorf("NewStreamID twice = %v, %v; want distinct non-zero ids", a, b)
	}
	for _, bad := range []string{"", "123", "9F3C2A71D04B88E1", "9f3c2a71d04b88e1a", "9f3c2a71d04b88eg"} {
		if _, err := ParseStreamID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseStreamID(%q) = %v; want ErrInvalid", bad, err)
		}
	}
}

func TestLineErrorMessage(t *testing.T) {
	_, errs := decodeAll(t, good+"\n"+strings.Replace(good, "21.5", "1e999", 1), Limits{})
	if len(errs) != 1 {
		t.Fatalf("errors = %v", errs)
	}
	got := errs[0].Error()
	for _, want := range []string{"line 2", `"value"`, "finite"} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q does not contain %q", got, want)
		}
	}
}
