package receiver

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/sqlite"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// mqttDevice connects as a device of a test broker, subscribed to its
// receipts; publish sends a readings message and waits for the PUBACK.
func mqttPublisher(t *testing.T, mq *testserver.Mosquitto, device string) (publish func([]byte), receipts chan reading.Receipt) {
	t.Helper()
	receipts = make(chan reading.Receipt, 100)
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID(device))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	if tok := dev.Subscribe("outpost/"+device+"/receipts", 1, func(_ mqtt.Client, msg mqtt.Message) {
		var r reading.Receipt
		if err := json.Unmarshal(msg.Payload(), &r); err != nil {
			t.Errorf("receipt %q: %v", msg.Payload(), err)
		}
		receipts <- r
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	return func(payload []byte) {
		t.Helper()
		if tok := dev.Publish("outpost/"+device+"/readings", 1, false, payload); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}, receipts
}

// Finding 6: MQTT has the HTTP limits (the Server's, here a 64 KiB body),
// and a rejected message is kept as its first KiB, its size and its
// SHA-256, not whole (main kept 5 MiB of junk as a 5 MiB row, and took a
// message over the body limit).
func TestMQTTLimitsAndRejectedDigest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto (skipped with -short)")
	}
	t.Parallel()
	mq := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	path := filepath.Join(t.TempDir(), "r.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		t.Fatal(err)
	}
	m, err := NewServer(st, Options{MaxBodyBytes: 64 << 10}).StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: "receiver-limits", Group: "limits"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	publish, receipts := mqttPublisher(t, mq, "pi-07")

	// Good lines, but more of them than the body limit: refused whole,
	// the receipt naming every seq so the device can tell its batch.
	big := []byte(lines(1, 600)) // ~90 KB
	publish(big)
	if r := waitReceipt(t, receipts); len(r.Rejected) != 1 || !strings.Contains(r.Rejected[0].Error, "over the limit of 65536") ||
		len(r.Rejected[0].Ranges) != 1 || r.Rejected[0].Ranges[0] != [2]uint64{1, 600} {
		t.Errorf("receipt of a %d-byte message = %+v; want rejected [[1 600]] as over the limit of 65536", len(big), r)
	}
	// Within the limit, the same readings are taken.
	publish([]byte(lines(1, 300)))
	if r := waitReceipt(t, receipts); len(r.Rejected) != 0 || len(r.Ranges) != 1 || r.Ranges[0] != [2]uint64{1, 300} {
		t.Errorf("receipt of a message within the limit = %+v; want stored [[1 300]]", r)
	}
	// 5 MiB of junk.
	junk := bytes.Repeat([]byte("junk "), 1<<20)
	publish(junk)
	if r := waitReceipt(t, receipts); len(r.Rejected) != 1 {
		t.Errorf("receipt of 5 MiB of junk = %+v; want rejected", r)
	}
	if n := len(storetest.All(t, st, store.Query{Device: "pi-07"})); n != 300 {
		t.Errorf("stored %d readings; want 300", n)
	}

	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT payload, payload_size, payload_sha256 FROM rejected_messages ORDER BY id`)
	if err != nil {
		t.Fatalf("rejected messages: %v", err)
	}
	defer rows.Close()
	var got int
	for want := range [][]byte{big, junk} {
		payload := [][]byte{big, junk}[want]
		if !rows.Next() {
			break
		}
		got++
		var kept, sum []byte
		var size int64
		if err := rows.Scan(&kept, &size, &sum); err != nil {
			t.Fatal(err)
		}
		wantSum := sha256.Sum256(payload)
		if !bytes.Equal(kept, payload[:store.MaxRejectedPayload]) || size != int64(len(payload)) || !bytes.Equal(sum, wantSum[:]) {
			t.Errorf("rejected message %d kept %d bytes, size %d, sha256 %x; want its first %d bytes, size %d, sha256 %x",
				want+1, len(kept), size, sum, store.MaxRejectedPayload, len(payload), wantSum)
		}
	}
	if err := rows.Err(); err != nil || got != 2 {
		t.Errorf("%d rejected messages kept (%v); want 2", got, err)
	}
}
