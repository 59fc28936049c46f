package testserver

import (
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const waitFor = 5 * time.Second

// connectMQTT connects a client as user (anonymous if empty) and disconnects it when the
// test ends. Messages on subscribed topics are delivered to the returned channel.
func connectMQTT(t *testing.T, m *Mosquitto, id, user, password string) (mqtt.Client, chan mqtt.Message, error) {
	t.Helper()
	msgs := make(chan mqtt.Message, 100)
	opts := mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID(id).
		SetUsername(user).SetPassword(password).
		SetAutoReconnect(false).SetConnectTimeout(waitFor).
		SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) { msgs <- msg })
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("connect %s: timed out", id)
	}
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, msgs, nil
}

func mustConnect(t *testing.T, m *Mosquitto, id, user, password string) (mqtt.Client, chan mqtt.Message) {
	t.Helper()
	c, msgs, err := connectMQTT(t, m, id, user, password)
	if err != nil {
		t.Fatalf("connect %s as %q: %v", id, user, err)
	}
	return c, msgs
}

func wait(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(waitFor) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func subscribe(t *testing.T, c mqtt.Client, topic string) byte {
	t.Helper()
	tok := c.Subscribe(topic, 1, nil)
	wait(t, tok, "subscribe "+topic)
	return tok.(*mqtt.SubscribeToken).Result()[topic]
}

func publish(t *testing.T, c mqtt.Client, topic string, retained bool, payload string) {
	t.Helper()
	wait(t, c.Publish(topic, 1, retained, payload), "publish "+topic)
}

func receive(t *testing.T, msgs chan mqtt.Message) mqtt.Message {
	t.Helper()
	select {
	case msg := <-msgs:
		return msg
	case <-time.After(waitFor):
		t.Fatal("no message within", waitFor)
		return nil
	}
}

func expect(t *testing.T, msgs chan mqtt.Message, topic, payload string) mqtt.Message {
	t.Helper()
	msg := receive(t, msgs)
	if msg.Topic() != topic || string(msg.Payload()) != payload {
		t.Fatalf("got %q on %s, want %q on %s", msg.Payload(), msg.Topic(), payload, topic)
	}
	return msg
}

func TestMosquittoQoS1Roundtrip(t *testing.T) {
	t.Parallel()
	m := StartMosquitto(t, MosquittoOptions{})
	if m.Port() == 1883 || m.Addr() != "127.0.0.1:"+strconv.Itoa(m.Port()) || m.URL() != "tcp://"+m.Addr() {
		t.Fatalf("port %d, Addr %q, URL %q", m.Port(), m.Addr(), m.URL())
	}
	sub, msgs := mustConnect(t, m, "sub", "", "")
	if qos := subscribe(t, sub, "outpost/+/readings"); qos != 1 {
		t.Fatalf("granted QoS %d, want 1", qos)
	}
	pub, _ := mustConnect(t, m, "pub", "", "")
	publish(t, pub, "outpost/pi-07/readings", false, "hello")
	if msg := expect(t, msgs, "outpost/pi-07/readings", "hello"); msg.Qos() != 1 {
		t.Fatalf("delivered with QoS %d, want 1", msg.Qos())
	}
}

func TestMosquittoUsersAndACL(t *testing.T) {
	t.Parallel()
	m := StartMosquitto(t, MosquittoOptions{
		Users: map[string]string{"pi-07": "secret-7", "pi-08": "secret-8", "receiver": "secret-r"},
		ACL: strings.Join([]string{
			"user receiver",
			"topic readwrite outpost/#",
			"",
			"pattern write outpost/%u/readings",
			"pattern read outpost/%u/receipts",
		}, "\n"),
		MaxPacketSize: 1 << 20,
	})

	if _, _, err := connectMQTT(t, m, "pi-07", "pi-07", "wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if _, _, err := connectMQTT(t, m, "anon", "", ""); err == nil {
		t.Fatal("an anonymous client was accepted")
	}

	receiver, readings := mustConnect(t, m, "receiver", "receiver", "secret-r")
	subscribe(t, receiver, "outpost/+/readings")
	pi8, receipts := mustConnect(t, m, "pi-08", "pi-08", "secret-8")

	// pi-08 publishing as pi-07 is acknowledged but not delivered: the next message on the
	// same connection arrives first.
	publish(t, pi8, "outpost/pi-07/readings", false, "forged")
	publish(t, pi8, "outpost/pi-08/readings", false, "own")
	expect(t, readings, "outpost/pi-08/readings", "own")

	// pi-08 may not read pi-07's receipts, only its own.
	// (Mosquitto 2.0 grants the subscription and filters at delivery.)
	subscribe(t, pi8, "outpost/pi-07/receipts")
	subscribe(t, pi8, "outpost/pi-08/receipts")
	publish(t, receiver, "outpost/pi-07/receipts", false, "for pi-07")
	publish(t, receiver, "outpost/pi-08/receipts", false, "for pi-08")
	expect(t, receipts, "outpost/pi-08/receipts", "for pi-08")
}

func TestMosquittoStopKeepsRetained(t *testing.T) {
	t.Parallel()
	m := StartMosquitto(t, MosquittoOptions{})
	pub, _ := mustConnect(t, m, "pi-07", "", "")
	publish(t, pub, "outpost/pi-07/status", true, `{"state":"online"}`)

	port := m.Port()
	m.Stop()
	m.Stop() // a no-op when not running
	m.Start()
	if m.Port() != port {
		t.Fatalf("port changed from %d to %d", port, m.Port())
	}
	sub, msgs := mustConnect(t, m, "sub", "", "")
	subscribe(t, sub, "outpost/+/status")
	if msg := expect(t, msgs, "outpost/pi-07/status", `{"state":"online"}`); !msg.Retained() {
		t.Fatal("message not flagged retained")
	}
}

// After Kill the broker starts again; with a short autosave interval, what it snapshotted
// before the kill is still there.
func TestMosquittoKillStart(t *testing.T) {
	t.Parallel()
	m := StartMosquitto(t, MosquittoOptions{AutosaveInterval: time.Second})
	pub, _ := mustConnect(t, m, "pi-07", "", "")
	publish(t, pub, "outpost/pi-07/status", true, "saved")
	time.Sleep(2500 * time.Millisecond) // more than one autosave interval

	m.Kill()
	if err := mqttPing(m.Addr()); err == nil {
		t.Fatal("the killed broker still answers")
	}
	m.Kill() // a no-op when not running
	m.Start()

	sub, msgs := mustConnect(t, m, "sub", "", "")
	subscribe(t, sub, "outpost/#")
	expect(t, msgs, "outpost/pi-07/status", "saved")
	publish(t, sub, "outpost/pi-07/readings", false, "after restart")
	expect(t, msgs, "outpost/pi-07/readings", "after restart")
	m.Kill() // the cleanup copes with a killed broker
}
