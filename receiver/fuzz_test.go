package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
)

// FuzzIngest throws arbitrary bodies at POST /v1/readings: the handler
// never panics, never answers 5xx for bad input, and a 200 accounts for
// every reading line of the batch.
func FuzzIngest(f *testing.F) {
	f.Add([]byte(lines(1, 3)), uint8(0), false)
	f.Add([]byte(line(1, `,"labels":{"a":"b"},"clock":"unsynced"`)+`{"device":"pi-07","stream":"9f3c2a71d04b88e1","dropped":{"from":2,"to":9}}`), uint8(0), false)
	f.Add([]byte("["+strings.TrimSpace(line(4, ""))+"]"), uint8(1), false)
	f.Add(gz([]byte(lines(5, 6))), uint8(0), true)
	f.Add([]byte(`{"device":"pi-08","stream":"9f3c2a71d04b88e1","seq":1}`), uint8(0), false)
	f.Add([]byte("[1, {}, null]"), uint8(1), false)
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0}, uint8(2), true)

	st, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(st.Close)
	if err := st.Migrate(f.Context()); err != nil {
		f.Fatal(err)
	}
	if err := st.AddDevice(f.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		f.Fatal(err)
	}
	h := NewServer(st, Options{MaxBodyBytes: 64 << 10, MaxDecodedBytes: 256 << 10, MaxLines: 200}).Handler()
	types := []string{"application/x-ndjson", "application/json", "text/plain"}

	f.Fuzz(func(t *testing.T, body []byte, ctype uint8, gzipped bool) {
		r := httptest.NewRequest(http.MethodPost, "/v1/readings", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tokPi07)
		r.Header.Set("Content-Type", types[int(ctype)%len(types)])
		if gzipped {
			r.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("status %d for bad input: %s", rec.Code, rec.Body)
		}
		var eb errorBody
		if rec.Code != 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" {
				t.Fatalf("status %d with body %q: want {\"error\":…}", rec.Code, rec.Body)
			}
			return
		}
		var res store.Result
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("200 body %q: %v", rec.Body, err)
		}
		if want := countReadings(t, body, types[int(ctype)%len(types)], gzipped); res.Accepted+res.Duplicates+res.Conflicts != want {
			t.Fatalf("200 %+v does not account for the %d readings sent", res, want)
		}
	})
}

// countReadings decodes an accepted body again and counts its readings.
func countReadings(t *testing.T, body []byte, ctype string, gzipped bool) int {
	var src io.Reader = bytes.NewReader(body)
	if gzipped {
		zr, err := gzipReader(src)
		if err != nil {
			t.Fatalf("accepted a body that is not gzip: %v", err)
		}
		src = zr
	}
	if ctype == "application/json" {
		src = newArrayReader(src, reading.DefaultMaxLineBytes)
	}
	dec := reading.NewDecoder(src, reading.Limits{})
	n := 0
	for {
		var l reading.Line
		err := dec.Decode(&l)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("accepted a body whose re-decoding fails: %v", err)
		}
		if l.Kind == reading.KindReading {
			n++
		}
	}
}

// FuzzMQTTIngest throws arbitrary payloads at the MQTT ingest handler:
// it never panics, acknowledges every message once, and receipts it:
// rejected (kept as at most a KiB of payload), or stored with ranges
// that account for every reading of the message.
func FuzzMQTTIngest(f *testing.F) {
	f.Add([]byte(lines(1, 3)))
	f.Add(gz([]byte(lines(5, 6))))
	f.Add([]byte(line(1, `,"labels":{"a":"b"}`) + `{"device":"pi-07","stream":"9f3c2a71d04b88e1","dropped":{"from":2,"to":9}}`))
	f.Add([]byte(`{"device":"pi-08","stream":"9f3c2a71d04b88e1","seq":1}`))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0})
	f.Add(bytes.Repeat([]byte("x"), 2<<10))

	st, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(st.Close)
	if err := st.Migrate(f.Context()); err != nil {
		f.Fatal(err)
	}
	if err := st.AddDevice(f.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		f.Fatal(err)
	}
	srv := NewServer(st, Options{})
	client := &receiptClient{}
	m := &MQTT{client: client, store: st, log: srv.log, metrics: srv.metrics, conflicts: srv.conflicts, ctx: f.Context(),
		devices: newDeviceCache(st, 0, nil),
		opt:     MQTTOptions{Prefix: "outpost", MaxBodyBytes: 64 << 10, MaxDecodedBytes: 256 << 10, MaxLineBytes: reading.DefaultMaxLineBytes, MaxLines: 200}}

	f.Fuzz(func(t *testing.T, payload []byte) {
		client.receipts = nil
		msg := &fuzzMessage{topic: "outpost/pi-07/readings", payload: payload}
		m.handleReadings(nil, msg)
		if msg.acks != 1 {
			t.Fatalf("message acknowledged %d times; want once", msg.acks)
		}
		if len(client.receipts) == 0 {
			t.Fatal("no receipt")
		}
		stored := 0
		for _, r := range client.receipts {
			if len(r.Rejected) > 0 {
				if len(client.receipts) != 1 || len(r.Rejected) != 1 || r.Rejected[0].Error == "" {
					t.Fatalf("receipts %+v: want one, rejected with its error", client.receipts)
				}
				return
			}
			for _, rg := range r.Ranges {
				stored += int(rg[1]-rg[0]) + 1
			}
		}
		if want := countDistinct(t, payload); stored != want {
			t.Fatalf("receipts %+v range %d seqs; the message holds %d", client.receipts, stored, want)
		}
	})
}

// countDistinct decodes a stored message again and counts its distinct
// (stream, seq) keys.
func countDistinct(t *testing.T, payload []byte) int {
	src, err := openPayload(payload)
	if err != nil {
		t.Fatalf("stored a message that does not open: %v", err)
	}
	b, err := decodeLines(src, reading.Limits{}, "pi-07", "topic")
	if err != nil {
		t.Fatalf("stored a message whose re-decoding fails: %v", err)
	}
	keys := map[store.Key]bool{}
	for _, r := range b.Readings {
		keys[store.Key{Stream: r.Stream, Seq: r.Seq}] = true
	}
	return len(keys)
}

// receiptClient is the broker side of the MQTT handler in the fuzz target:
// it keeps what is published (the receipts); nothing else is called.
type receiptClient struct {
	mqtt.Client
	receipts []reading.Receipt
}

func (c *receiptClient) Publish(topic string, qos byte, retained bool, payload any) mqtt.Token {
	var r reading.Receipt
	if err := json.Unmarshal(payload.([]byte), &r); err != nil {
		panic("receipt is not JSON: " + err.Error())
	}
	c.receipts = append(c.receipts, r)
	return doneToken{}
}

type doneToken struct{}

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{}          { c := make(chan struct{}); close(c); return c }
func (doneToken) Error() error                   { return nil }

type fuzzMessage struct {
	topic   string
	payload []byte
	acks    int
}

func (m *fuzzMessage) Duplicate() bool   { return false }
func (m *fuzzMessage) Qos() byte         { return 1 }
func (m *fuzzMessage) Retained() bool    { return false }
func (m *fuzzMessage) Topic() string     { return m.topic }
func (m *fuzzMessage) MessageID() uint16 { return 1 }
func (m *fuzzMessage) Payload() []byte   { return m.payload }
func (m *fuzzMessage) Ack()              { m.acks++ }
