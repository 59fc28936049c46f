package receiver

import (
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/outpost-iot/outpost/internal/logbuf"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// readmeBlock returns the indented code block of the README whose first
// line is first, without its indentation and without that line.
func readmeBlock(t *testing.T, first string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for l := range strings.SplitSeq(string(b), "\n") {
		switch {
		case l == "    "+first:
			in = true
		case in && strings.HasPrefix(l, "    "):
			out = append(out, strings.TrimPrefix(l, "    "))
		case in:
			return strings.Join(out, "\n")
		}
	}
	t.Fatalf("README.md has no code block starting %q", first)
	return ""
}

// TestREADMEBrokerConfig starts Mosquitto with the README's recommended
// configuration and ACL, as they are written there, and checks what they
// are for: a client that logs in as a device and asks for a receiver's
// client id, or another device's, knocks nobody off; a device cannot
// publish as another; and two receiver replicas, each with its own user,
// take a device's batches and answer with receipts.
func TestREADMEBrokerConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto (skipped with -short)")
	}
	t.Parallel()
	var conf []string
	for _, l := range strings.Split(readmeBlock(t, "# /etc/mosquitto/conf.d/outpost.conf"), "\n") {
		key, _, _ := strings.Cut(l, " ")
		switch key {
		case "allow_anonymous", "password_file", "acl_file": // the harness writes its own
		default:
			conf = append(conf, l)
		}
	}
	acl := readmeBlock(t, "# /etc/mosquitto/outpost.acl")
	users := map[string]string{"outpost-receiver-a": "pw-a", "outpost-receiver-b": "pw-b", "pi-07": "pw-07", "pi-08": "pw-08"}
	mq := testserver.StartMosquitto(t, testserver.MosquittoOptions{Users: users, ACL: acl, Config: strings.Join(conf, "\n")})

	st := openSQLiteT(t)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		t.Fatal(err)
	}
	var logs []*logbuf.Buffer
	for _, id := range []string{"outpost-receiver-a", "outpost-receiver-b"} {
		var lb logbuf.Buffer
		m, err := NewServer(st, Options{}).StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: id,
			Username: id, Password: users[id], Logger: slog.New(slog.NewTextHandler(&lb, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		logs = append(logs, &lb)
	}
	var deviceLost atomic.Int32
	receipts := make(chan struct{}, 100)
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("pi-07").
		SetUsername("pi-07").SetPassword(users["pi-07"]).SetCleanSession(false).SetAutoReconnect(false).
		SetConnectionLostHandler(func(mqtt.Client, error) { deviceLost.Add(1) }))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	if tok := dev.Subscribe("outpost/pi-07/receipts", 1, func(mqtt.Client, mqtt.Message) { receipts <- struct{}{} }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}

	// pi-08, a device with valid credentials, takes the receivers' client
	// ids and pi-07's, each with a clean session, and publishes on
	// pi-07's topic.
	for _, id := range []string{"outpost-receiver-a", "outpost-receiver-b", "pi-07", "outpost-receiver-a"} {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID(id).
			SetUsername("pi-08").SetPassword(users["pi-08"]).SetCleanSession(true).SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("pi-08 connect as %s: %v", id, tok.Error())
		}
		c.Publish("outpost/pi-07/readings", 1, false, []byte(lines(900, 909))).WaitTimeout(10 * time.Second)
		time.Sleep(100 * time.Millisecond) // stay connected a while: a takeover would happen now
		c.Disconnect(100)
	}

	// pi-07's batches: stored and receipted, through both replicas.
	const batches = 10
	for i := range batches {
		if tok := dev.Publish("outpost/pi-07/readings", 1, false, []byte(lines(10*i+1, 10*i+10))); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		select {
		case <-receipts:
		case <-time.After(15 * time.Second):
			t.Fatalf("no receipt for batch %d within 15s", i+1)
		}
	}
	if n := len(storetest.All(t, st, store.Query{Device: "pi-07"})); n != batches*10 {
		t.Errorf("stored %d readings of pi-07; want %d (none of pi-08's on pi-07's topic)", n, batches*10)
	}
	for i, lb := range logs {
		if strings.Contains(lb.String(), "connection lost") {
			t.Errorf("receiver %c was knocked off the broker:\n%s", 'a'+i, lb)
		}
	}
	if n := deviceLost.Load(); n != 0 {
		t.Errorf("device pi-07 lost its connection %d times; want 0", n)
	}
}
